package server_test

import (
	"testing"

	"github.com/simpled/simpled/internal/servertest"

	"go.uber.org/goleak"
)

// TestMain shortens the SIP timers and fails the run on leaked goroutines (servertest.Main).
//
// One known leak is ignored: a server built by New and closed without Start
// (TestRedisPersistenceWarning) keeps the offline store-and-forward's subscription to the
// registration bus, and with it the subscription's pump, because the proxy ends that
// subscription only when its offline worker's run ends. It costs one goroutine per such server
// and no server does it outside this test; the offline package of the proxy split should end
// the subscription in its Close.
func TestMain(m *testing.M) {
	servertest.Main(m, goleak.IgnoreTopFunction("github.com/simpled/simpled/storage.(*subscription).pump"))
}
