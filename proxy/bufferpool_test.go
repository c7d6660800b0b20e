package proxy

import "testing"

// TestBufferPoolNoAllocs: after warm-up, lending and returning a buffer
// allocates nothing (a plain sync.Pool of slices would box each Put).
func TestBufferPoolNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector; make test runs this without it")
	}
	var b bufferPool
	b.Put(b.Get())
	buf := b.Get()
	if len(buf) != 32<<10 {
		t.Fatalf("buffer of %d bytes, want 32 KiB", len(buf))
	}
	b.Put(buf)
	if n := testing.AllocsPerRun(100, func() { b.Put(b.Get()) }); n != 0 {
		t.Fatalf("Get+Put allocates %.1f times per round", n)
	}
}
