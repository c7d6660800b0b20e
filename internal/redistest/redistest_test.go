package redistest

import (
	"testing"
)

func TestStartStopRestart(t *testing.T) {
	addr, stop, restart := Start(t)
	if err := ping(addr); err != nil {
		t.Fatalf("ping after start: %v", err)
	}
	stop()
	if err := ping(addr); err == nil {
		t.Fatal("ping succeeded after stop")
	}
	stop() // idempotent
	restart()
	if err := ping(addr); err != nil {
		t.Fatalf("ping after restart on %s: %v", addr, err)
	}
	restart() // restart while running kills and starts again
	if err := ping(addr); err != nil {
		t.Fatalf("ping after second restart: %v", err)
	}
}
