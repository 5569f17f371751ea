package dialog_test

import (
	"testing"

	"github.com/simpled/simpled/internal/servertest"
)

// TestMain shortens the SIP timers and fails the run on leaked goroutines (servertest.Main).
func TestMain(m *testing.M) { servertest.Main(m) }
