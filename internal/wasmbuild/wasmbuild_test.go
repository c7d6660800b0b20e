package wasmbuild

import (
	"bytes"
	"os"
	"testing"
)

func TestBuildCachesBySource(t *testing.T) {
	p := Build(t, "proxy/wasm/testdata/guests/header")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x00asm")) {
		t.Fatalf("%s is not a wasm module", p)
	}
	memo.Delete("proxy/wasm/testdata/guests/header")
	st, _ := os.Stat(p)
	if again := Build(t, "proxy/wasm/testdata/guests/header"); again != p {
		t.Fatalf("second build went to %s, want the cached %s", again, p)
	}
	if st2, _ := os.Stat(p); !st2.ModTime().Equal(st.ModTime()) {
		t.Fatal("unchanged sources were rebuilt")
	}
	if CacheDir() == "" {
		t.Fatal("empty CacheDir")
	}
}
