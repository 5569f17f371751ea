package cpim_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/simpled/simpled/cpim"
)

// A CPIM body as linphone sends it in a MESSAGE (captured, see testdata).
func ExampleParse() {
	body := "From: <sip:dave@example.test>\r\n" +
		"To: <sip:bob@example.test>\r\n" +
		"DateTime: 2026-11-22T12:40:32Z\r\n" +
		"NS: imdn <urn:ietf:params:imdn>\r\n" +
		"imdn.Message-ID: nxqlmMtFPfOy\r\n" +
		"imdn.Disposition-Notification: positive-delivery, negative-delivery, display\r\n" +
		"\r\n" +
		"Content-Type: text/plain\r\n" +
		"Content-Length: 27\r\n" +
		"\r\n" +
		"cpim hello bob d2b-2c25372a"
	m, err := cpim.Parse([]byte(body))
	if err != nil {
		fmt.Println(err) // e.g. "cpim: line 5: undeclared namespace prefix: ..." for a 400
		return
	}
	dt, _ := m.DateTime()
	fmt.Println("from:", m.From())
	fmt.Println("to:", m.To())
	fmt.Println("sent:", dt.Format(time.RFC1123))
	fmt.Println("message-id:", m.MessageID())
	fmt.Println("wants:", m.DispositionNotification())
	fmt.Println("type:", m.ContentType())
	fmt.Printf("content: %s\n", m.Content())
	// Output:
	// from: <sip:dave@example.test>
	// to: <sip:bob@example.test>
	// sent: Sun, 22 Nov 2026 12:40:32 UTC
	// message-id: nxqlmMtFPfOy
	// wants: [positive-delivery negative-delivery display]
	// type: text/plain
	// content: cpim hello bob d2b-2c25372a
}

// Errors name the line and the fault, fit for a SIP 400 reason phrase.
func ExampleParse_error() {
	_, err := cpim.Parse([]byte("From: <sip:dave@example.test>\r\nx.Message-ID: 1\r\n\r\nContent-Type: text/plain\r\n\r\nhi"))
	fmt.Println(err)
	// Output:
	// cpim: line 2: undeclared namespace prefix: "x" in "x.Message-ID"
}

// A system message from the server, asking for a delivery notification.
func ExampleNew() {
	m, err := cpim.New("<sip:simpled@example.test>", "<sip:bob@example.test>", "text/plain;charset=UTF-8",
		[]byte("You have 2 new messages."))
	if err != nil {
		panic(err)
	}
	m.SetDateTime(time.Date(2026, 11, 22, 12, 40, 32, 0, time.UTC))
	if err := m.SetIMDN("sys-4f1c2a9e", "positive-delivery"); err != nil {
		panic(err)
	}
	// Bytes writes CRLF line ends; shown here with LF.
	fmt.Print(strings.ReplaceAll(string(m.Bytes()), "\r\n", "\n"))
	// Output:
	// From: <sip:simpled@example.test>
	// To: <sip:bob@example.test>
	// DateTime: 2026-11-22T12:40:32Z
	// NS: imdn <urn:ietf:params:imdn>
	// imdn.Message-ID: sys-4f1c2a9e
	// imdn.Disposition-Notification: positive-delivery
	//
	// Content-Type: text/plain;charset=UTF-8
	// Content-Length: 24
	//
	// You have 2 new messages.
}

// HeaderNS finds a header by namespace, whatever prefix the sender chose.
func ExampleMessage_HeaderNS() {
	m, err := cpim.Parse([]byte("NS: d <urn:ietf:params:imdn>\r\nd.Message-ID: 42\r\n\r\nContent-Type: text/plain\r\n\r\n"))
	if err != nil {
		panic(err)
	}
	id, _ := m.HeaderNS(cpim.NamespaceIMDN, "Message-ID")
	fmt.Println(id, m.MessageID())
	// Output:
	// 42 42
}
