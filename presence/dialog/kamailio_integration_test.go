package dialog_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/servertest"
)

// TestKamailioPublishesDialogs: Kamailio beside simpled as the PBX edge of calls simpled does
// not route (testdata/kamailio/pua_dialoginfo.cfg: pua_dialoginfo PUBLISHes each call's
// dialog state), a sipp caller and callee through it: bob's watcher on simpled sees the call
// from Kamailio's publications come up and end, and after the call bob is idle again.
func TestKamailioPublishesDialogs(t *testing.T) {
	sipp := servertest.Tool(t, "sipp", "sip-tester")
	const kamIP = "127.0.0.7"
	srv := servertest.Start(t, func(o *servertest.Options) {
		servertest.FastPresence(o)
		o.Proxy.TrustedPeers = []string{kamIP}
	})
	servertest.MakeKnown(t, srv, "bob")
	w, first := watchDialog(t, srv, "carol@example.test", "bob", "blf-kam")
	idle(t, first, "before the call")

	repo := servertest.RepoDir(t)
	kamPort := servertest.FreePortsAt(t, kamIP, 1, false)
	uasPort := servertest.FreePorts(t, 1, false)
	servertest.StartKamailio(t, filepath.Join(repo, "testdata", "kamailio", "pua_dialoginfo.cfg"), map[string]string{
		"KAM_LISTEN":  "udp:" + kamIP + ":" + strconv.Itoa(kamPort),
		"PRES_SERVER": `"sip:` + srv.Listener("udp") + `"`,
		"UAS":         `"sip:127.0.0.1:` + strconv.Itoa(uasPort) + `"`,
		"DB_URL":      `"text://{dir}"`,
		"DOMAIN":      `"example.test"`,
	}, filepath.Join(repo, "testdata", "kamailio", "dbtext", "version"), filepath.Join(repo, "testdata", "kamailio", "dbtext", "pua"))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	uas := exec.CommandContext(ctx, sipp, "-sf", filepath.Join(repo, "testdata", "kamailio", "call_uas.xml"), "-i", "127.0.0.1", "-p", strconv.Itoa(uasPort), "-m", "1", "-nostdin", "-timeout", "25s")
	out := &servertest.SyncBuffer{}
	uas.Stdout, uas.Stderr = out, out
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = uas.Process.Kill(); _ = uas.Wait() })
	time.Sleep(300 * time.Millisecond)
	uacPort := servertest.FreePorts(t, 1, false)
	// alice calls bob (the scenario's To names bob of simpled's domain, which is what
	// pua_dialoginfo publishes for) and hangs up after two seconds.
	uac := exec.CommandContext(ctx, sipp, "-sf", filepath.Join(repo, "testdata", "kamailio", "call_uac.xml"),
		"-key", "domain", "example.test", kamIP+":"+strconv.Itoa(kamPort),
		"-i", "127.0.0.1", "-p", strconv.Itoa(uacPort), "-m", "1", "-nostdin", "-timeout", "20s")
	uacOut := &servertest.SyncBuffer{}
	uac.Stdout, uac.Stderr = uacOut, uacOut
	if err := uac.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sipp caller:\n%s\nsipp callee:\n%s", uacOut.String(), out.String())
		}
	})
	done := make(chan error, 1)
	go func() { done <- uac.Wait() }()

	var callID string
	var seen []string
	for range 10 {
		d := doc(t, w.Notify())
		for _, x := range d.Dialogs {
			seen = append(seen, x.State)
			if x.CallID != "" && x.State == "confirmed" {
				callID = x.CallID
			}
		}
		if callID != "" {
			break
		}
	}
	if callID == "" {
		t.Fatalf("no confirmed dialog from Kamailio's PUBLISHes in ten NOTIFYs (saw %v)\n%s", seen, uacOut.String())
	}
	x, _ := until(t, w, callID, "terminated")
	if x.Direction != "recipient" {
		t.Errorf("bob's dialog from Kamailio: direction %q, want recipient", x.Direction)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sipp caller: %v\n%s", err, uacOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sipp caller did not finish")
	}
}
