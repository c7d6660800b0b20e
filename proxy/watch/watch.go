// Package watch tells the proxy when its config must be reloaded: when a
// watched file (config, plugins, certificates) changes on disk, or when the
// process gets SIGHUP. It watches the files' parent directories, because
// editors and config managers replace files by renaming a new one over them
// (and Kubernetes swaps a "..data" symlink), and it debounces a burst of
// events into one call.
package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// DefaultDebounce is used when New gets a debounce of zero or less.
const DefaultDebounce = 250 * time.Millisecond

// ErrStarted is returned by Start on a watcher that was already started.
var ErrStarted = errors.New("watch: already started")

// Watcher calls onChange once after a burst of changes to the watched files
// or a SIGHUP. Calls never overlap: a change during a call schedules exactly
// one more call after it.
type Watcher struct {
	log      *zap.Logger
	debounce time.Duration
	onChange func(context.Context) error

	mu      sync.Mutex
	files   map[string]map[string]os.FileInfo // dir -> base name -> last seen state (nil: missing)
	fsw     *fsnotify.Watcher
	sighup  bool
	started bool
	closed  bool
	pending []string // reasons collected during the current debounce window

	kick   chan struct{} // a change happened (buffered 1)
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a watcher that calls onChange after changes settle for
// debounce. Add paths with Watch or SetPaths, then Start it.
func New(log *zap.Logger, debounce time.Duration, onChange func(ctx context.Context) error) *Watcher {
	if log == nil {
		log = zap.NewNop()
	}
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	return &Watcher{
		log:      log.Named("watch"),
		debounce: debounce,
		onChange: onChange,
		files:    map[string]map[string]os.FileInfo{},
		kick:     make(chan struct{}, 1),
	}
}

// HandleSIGHUP makes the watcher also call onChange when the process gets
// SIGHUP, from Start until Close. Call it before Start.
func (w *Watcher) HandleSIGHUP() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sighup = true
}

// Watch adds paths to the watched set. Their directories must exist; the
// files themselves may not (yet).
func (w *Watcher) Watch(paths ...string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	next := w.copyFiles()
	if err := addPaths(next, paths); err != nil {
		return err
	}
	return w.apply(next)
}

// SetPaths replaces the watched set with paths (after a reload the set of
// plugin and certificate files may differ).
func (w *Watcher) SetPaths(paths []string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	next := map[string]map[string]os.FileInfo{}
	if err := addPaths(next, paths); err != nil {
		return err
	}
	return w.apply(next)
}

// Paths returns the watched files, sorted.
func (w *Watcher) Paths() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for dir, names := range w.files {
		for name := range names {
			out = append(out, filepath.Join(dir, name))
		}
	}
	sort.Strings(out)
	return out
}

func (w *Watcher) copyFiles() map[string]map[string]os.FileInfo {
	next := make(map[string]map[string]os.FileInfo, len(w.files))
	for dir, names := range w.files {
		m := make(map[string]os.FileInfo, len(names))
		for n, fi := range names {
			m[n] = fi
		}
		next[dir] = m
	}
	return next
}

func addPaths(dst map[string]map[string]os.FileInfo, paths []string) error {
	for _, p := range paths {
		if p == "" {
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("watch: %q: %w", p, err)
		}
		dir, name := filepath.Split(abs)
		dir = filepath.Clean(dir)
		if st, err := os.Stat(dir); err != nil {
			return fmt.Errorf("watch: directory of %q: %w", p, err)
		} else if !st.IsDir() {
			return fmt.Errorf("watch: %q is not a directory", dir)
		}
		if dst[dir] == nil {
			dst[dir] = map[string]os.FileInfo{}
		}
		if _, ok := dst[dir][name]; !ok {
			dst[dir][name] = stat(abs)
		}
	}
	return nil
}

// apply makes next the watched set, adding and removing directory watches
// when the watcher runs. Called with w.mu held.
func (w *Watcher) apply(next map[string]map[string]os.FileInfo) error {
	if w.fsw != nil {
		var errs []error
		for dir := range next {
			if _, ok := w.files[dir]; !ok {
				if err := w.fsw.Add(dir); err != nil {
					errs = append(errs, fmt.Errorf("watch: add %q: %w", dir, err))
					delete(next, dir)
				}
			}
		}
		for dir := range w.files {
			if _, ok := next[dir]; !ok {
				// The directory may be gone already; the watch went with it.
				_ = w.fsw.Remove(dir)
			}
		}
		w.files = next
		return errors.Join(errs...)
	}
	w.files = next
	return nil
}

// stat returns the state of the file at path, following symlinks, or nil
// when it does not exist.
func stat(path string) os.FileInfo {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	return fi
}

// changed reports whether a file changed between two stats.
func changed(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a != b
	}
	return !os.SameFile(a, b) || !a.ModTime().Equal(b.ModTime()) || a.Size() != b.Size()
}

// Start begins watching; it returns once the directory watches and the
// SIGHUP handler are in place. onChange gets ctx; cancelling ctx stops the
// watcher like Close does (Close must still be called to wait for it).
func (w *Watcher) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.closed {
		return ErrStarted
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	dirs := make([]string, 0, len(w.files))
	for dir := range w.files {
		dirs = append(dirs, dir)
	}
	slices.Sort(dirs)
	for _, dir := range dirs {
		if err := fsw.Add(dir); err != nil {
			_ = fsw.Close()
			return fmt.Errorf("watch: add %q: %w", dir, err)
		}
		for name := range w.files[dir] {
			w.files[dir][name] = stat(filepath.Join(dir, name))
		}
	}
	w.fsw, w.started = fsw, true
	ctx, w.cancel = context.WithCancel(ctx)
	var hup chan os.Signal
	if w.sighup {
		hup = make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
	}
	run := make(chan []string, 1)
	w.wg.Add(2)
	go w.loop(ctx, fsw, hup, run)
	go w.runner(ctx, run)
	w.log.Debug("watching", zap.Strings("dirs", dirs), zap.Bool("sighup", w.sighup))
	return nil
}

// Trigger schedules a call as if a watched file changed.
func (w *Watcher) Trigger(reason string) { w.note(reason) }

func (w *Watcher) note(reason string) {
	w.mu.Lock()
	if !slices.Contains(w.pending, reason) {
		w.pending = append(w.pending, reason)
	}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// loop turns fsnotify events and signals into debounced runs.
func (w *Watcher) loop(ctx context.Context, fsw *fsnotify.Watcher, hup chan os.Signal, run chan []string) {
	defer w.wg.Done()
	defer close(run)
	if hup != nil {
		defer signal.Stop(hup)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-fsw.Events:
			if !ok {
				return
			}
			w.event(ev)
		case err, ok := <-fsw.Errors:
			if !ok {
				return
			}
			// Overflow means events were lost: reload to be safe.
			w.log.Warn("file watch error", zap.Error(err))
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.note("event overflow")
			}
		case <-hup:
			w.note("SIGHUP")
		case <-w.kick:
			timer.Reset(w.debounce)
		case <-timer.C:
			w.mu.Lock()
			reasons := w.pending
			w.pending = nil
			w.mu.Unlock()
			if len(reasons) == 0 {
				continue
			}
			select {
			case run <- reasons:
			default:
				// A run is already queued: fold these reasons into it.
				select {
				case queued := <-run:
					run <- mergeReasons(queued, reasons)
				default:
					run <- reasons
				}
			}
		}
	}
}

func mergeReasons(a, b []string) []string {
	out := slices.Clone(a)
	for _, r := range b {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// event handles one fsnotify event in a watched directory.
func (w *Watcher) event(ev fsnotify.Event) {
	if ev.Op == fsnotify.Chmod {
		return
	}
	dir, name := filepath.Split(ev.Name)
	dir = filepath.Clean(dir)
	w.mu.Lock()
	names, ok := w.files[dir]
	if !ok {
		w.mu.Unlock()
		return
	}
	var hit []string
	if _, ok := names[name]; ok {
		names[name] = stat(ev.Name)
		hit = append(hit, ev.Name)
	} else {
		// Another name in the directory changed, e.g. Kubernetes swapping
		// "..data": see whether a watched file now resolves elsewhere.
		for n, old := range names {
			p := filepath.Join(dir, n)
			if now := stat(p); changed(old, now) {
				names[n] = now
				hit = append(hit, p)
			}
		}
	}
	w.mu.Unlock()
	for _, p := range hit {
		w.log.Debug("file changed", zap.String("path", p), zap.String("event", ev.String()))
		w.note(p)
	}
}

// runner calls onChange for each queued run, one at a time.
func (w *Watcher) runner(ctx context.Context, run chan []string) {
	defer w.wg.Done()
	for reasons := range run {
		if ctx.Err() != nil {
			return
		}
		w.log.Info("change detected, reloading", zap.Strings("reasons", reasons))
		if err := w.onChange(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("reload after change failed", zap.Strings("reasons", reasons), zap.Error(err))
		}
	}
}

// Close stops watching and waits for a running onChange to return (its ctx
// is cancelled). It is safe to call more than once.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	fsw, cancel := w.fsw, w.cancel
	w.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	w.wg.Wait()
	if fsw != nil {
		if err := fsw.Close(); err != nil {
			return fmt.Errorf("watch: close: %w", err)
		}
	}
	return nil
}
