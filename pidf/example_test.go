package pidf_test

import (
	"fmt"

	"github.com/simpled/simpled/pidf"
)

func ExampleParse() {
	body := []byte(`<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:dave@example.test" xmlns="urn:ietf:params:xml:ns:pidf">
 <tuple id="s1ip4j">
  <status><basic>open</basic></status>
  <contact priority="0.8">sip:dave@example.test</contact>
 </tuple>
 <dm:person id="dmzkdl"><rpid:activities><rpid:away/></rpid:activities></dm:person>
</presence>`)
	d, err := pidf.Parse(body)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range d.Tuples() {
		fmt.Println(t.ID, t.Basic, t.Contact, t.Priority)
	}
	for _, p := range d.Persons() {
		fmt.Println(p.ID, p.Activities)
	}

	_, err = pidf.Parse([]byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf"/>`))
	fmt.Println(err)
	// Output:
	// s1ip4j open sip:dave@example.test 0.8
	// dmzkdl [away]
	// pidf: presence without entity
}

func ExampleCompose() {
	// baresip published twice with the same tuple id; the newest publication wins.
	older, _ := pidf.Parse([]byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
    entity="sip:alice@example.test">
  <dm:person id="p4159"><rpid:activities/></dm:person>
  <tuple id="t4109"><status><basic>open</basic></status></tuple>
</presence>`))
	newer, _ := pidf.Parse([]byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
    entity="sip:alice@example.test">
  <dm:person id="p4159"><rpid:activities><rpid:away/></rpid:activities></dm:person>
  <tuple id="t4109"><status><basic>closed</basic></status></tuple>
</presence>`))
	fmt.Println(string(pidf.Compose("sip:alice@example.test", older, newer).Bytes()))
	// Output:
	// <?xml version="1.0" encoding="UTF-8"?>
	// <presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:alice@example.test">
	//   <tuple id="t4109"><status><basic>closed</basic></status></tuple>
	//   <dm:person id="p4159"><rpid:activities><rpid:away/></rpid:activities></dm:person>
	// </presence>
}

func ExampleWatcherInfo() {
	w := &pidf.WatcherInfo{Version: 1, State: "full", Lists: []pidf.WatcherList{{
		Resource: "sip:alice@example.test",
		Package:  "presence",
		Watchers: []pidf.Watcher{{
			ID: "a1b2", Status: "pending", Event: "subscribe", URI: "sip:bob@example.test",
			DurationSubscribed: 0, Expiration: 600,
		}},
	}}}
	fmt.Println(string(w.Bytes()))

	back, err := pidf.ParseWatcherInfo(w.Bytes())
	fmt.Println(back.Lists[0].Watchers[0].Status, err)
	// Output:
	// <?xml version="1.0" encoding="UTF-8"?>
	// <watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="1" state="full">
	//   <watcher-list resource="sip:alice@example.test" package="presence">
	//     <watcher id="a1b2" status="pending" event="subscribe" duration-subscribed="0" expiration="600">sip:bob@example.test</watcher>
	//   </watcher-list>
	// </watcherinfo>
	// pending <nil>
}
