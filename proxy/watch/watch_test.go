package watch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// The os/signal dispatch goroutine lives for the whole process once any
// signal.Notify ran; it is not ours to stop.
var leakOpts = []goleak.Option{goleak.IgnoreTopFunction("os/signal.signal_recv"), goleak.IgnoreAnyFunction("os/signal.loop")}

// noLeaks checks for leaked goroutines after the test's cleanups (which
// close the watcher) have run.
func noLeaks(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpts...) })
}

const debounce = 100 * time.Millisecond

// counter counts onChange calls and records the error to return.
type counter struct {
	n    atomic.Int32
	fail atomic.Bool
}

func (c *counter) onChange(context.Context) error {
	c.n.Add(1)
	if c.fail.Load() {
		return errors.New("config refused")
	}
	return nil
}

// waitFor polls until the call count reaches want or fails after a deadline.
func (c *counter) waitFor(t *testing.T, want int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.n.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("onChange called %d times, want %d", c.n.Load(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// quiet asserts the count stays at want for several debounce periods.
func (c *counter) quiet(t *testing.T, want int32) {
	t.Helper()
	time.Sleep(4 * debounce)
	if got := c.n.Load(); got != want {
		t.Fatalf("onChange called %d times, want %d", got, want)
	}
}

func start(t *testing.T, c *counter, sighup bool, paths ...string) *Watcher {
	t.Helper()
	w := New(zaptest.NewLogger(t), debounce, c.onChange)
	if sighup {
		w.HandleSIGHUP()
	}
	if err := w.Watch(paths...); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return w
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFileChanges(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, dir, path string)
	}{
		{"write in place", func(t *testing.T, _, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = f.WriteString("more: 1\n")
			_ = f.Close()
		}},
		{"rename replace", func(t *testing.T, dir, path string) {
			tmp := filepath.Join(dir, ".config.yaml.swp")
			write(t, tmp, "mode: sidecar\n")
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncate", func(t *testing.T, _, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"delete and recreate", func(t *testing.T, _, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			write(t, path, "mode: edge\n")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noLeaks(t)
			dir := t.TempDir()
			path := filepath.Join(dir, "config.yaml")
			write(t, path, "mode: edge\n")
			var c counter
			start(t, &c, false, path)
			tt.change(t, dir, path)
			c.waitFor(t, 1)
			c.quiet(t, 1)
		})
	}
}

func TestOtherFilesIgnored(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	write(t, path, "a")
	var c counter
	start(t, &c, false, path)
	write(t, filepath.Join(dir, "notes.txt"), "x")
	write(t, filepath.Join(dir, "config.yaml.bak"), "x")
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	c.quiet(t, 0)
}

func TestBurstDebounced(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	plug := filepath.Join(dir, "auth.wasm")
	write(t, cfg, "a")
	write(t, plug, "a")
	var c counter
	start(t, &c, false, cfg, plug)
	for i := range 30 {
		write(t, cfg, string(rune('a'+i%26)))
		write(t, plug, string(rune('a'+i%26)))
	}
	c.waitFor(t, 1)
	c.quiet(t, 1)
}

func TestSIGHUP(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	var c counter
	w := start(t, &c, true, filepath.Join(dir, "config.yaml"))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, 1)
	c.quiet(t, 1)
	// Until Close the handler stays in place; a second signal reloads again.
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, 2)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSetPathsAndMissingFile(t *testing.T) {
	noLeaks(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	a := filepath.Join(dirA, "a.wasm")
	b := filepath.Join(dirB, "b.wasm") // does not exist yet
	write(t, a, "1")
	var c counter
	w := start(t, &c, false, a)
	if err := w.SetPaths([]string{b}); err != nil {
		t.Fatal(err)
	}
	if got := w.Paths(); len(got) != 1 || got[0] != b {
		t.Fatalf("paths = %v", got)
	}
	write(t, a, "2")
	c.quiet(t, 0)
	write(t, b, "created")
	c.waitFor(t, 1)
	if err := w.Watch(filepath.Join(t.TempDir(), "missing", "x")); err == nil {
		t.Fatal("watching a file in a missing directory succeeded")
	}
}

// TestKubernetesSymlinkSwap mimics a ConfigMap volume: config.yaml ->
// ..data/config.yaml, ..data -> ..v1; an update renames a new ..data link
// over the old one, so no event names config.yaml itself.
func TestKubernetesSymlinkSwap(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	mk := func(ver, data string) {
		if err := os.Mkdir(filepath.Join(dir, ver), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, ver, "config.yaml"), data)
	}
	mk("..v1", "mode: edge\n")
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.Symlink(filepath.Join("..data", "config.yaml"), path); err != nil {
		t.Fatal(err)
	}
	var c counter
	start(t, &c, false, path)
	mk("..v2", "mode: sidecar\n")
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, 1)
	c.quiet(t, 1)
}

func TestErrorsDoNotStopWatching(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	write(t, path, "1")
	var c counter
	c.fail.Store(true)
	start(t, &c, false, path)
	write(t, path, "2")
	c.waitFor(t, 1)
	write(t, path, "3")
	c.waitFor(t, 2)
}

// TestCloseWaitsForRunningCall checks that Close cancels and waits for a
// call in progress, and that no call starts after Close.
func TestCloseWaitsForRunningCall(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	write(t, path, "1")
	entered := make(chan struct{})
	var done atomic.Bool
	w := New(zap.NewNop(), debounce, func(ctx context.Context) error {
		close(entered)
		<-ctx.Done()
		done.Store(true)
		return ctx.Err()
	})
	if err := w.Watch(path); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start = %v", err)
	}
	w.Trigger("test")
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("onChange not called after Trigger")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !done.Load() {
		t.Fatal("Close returned before onChange finished")
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

// TestChangeDuringCall checks that changes while onChange runs lead to
// exactly one more call, never to overlapping calls.
func TestChangeDuringCall(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	write(t, path, "1")
	var calls, running, overlap atomic.Int32
	release := make(chan struct{})
	w := New(zap.NewNop(), 20*time.Millisecond, func(ctx context.Context) error {
		if running.Add(1) > 1 {
			overlap.Add(1)
		}
		defer running.Add(-1)
		if calls.Add(1) == 1 {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil
	})
	if err := w.Watch(path); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Trigger("first")
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	for i := range 5 {
		write(t, path, string(rune('a'+i)))
		time.Sleep(40 * time.Millisecond) // each write its own debounce window
	}
	close(release)
	for calls.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if got := calls.Load(); got != 2 {
		t.Fatalf("calls = %d, want 2 (the first plus one for all changes during it)", got)
	}
	if overlap.Load() != 0 {
		t.Fatal("onChange calls overlapped")
	}
}
