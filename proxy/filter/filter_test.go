package filter

import (
	"errors"
	"strings"
	"testing"
)

func TestEachSetting(t *testing.T) {
	var seen []string
	err := EachSetting(map[string]string{"b": " 2 ", "a": "1", "c": "bad"}, func(k, v string) error {
		seen = append(seen, k+"="+v)
		if v == "bad" || k == "a" {
			return errors.New(k + " refused")
		}
		return nil
	})
	if got := strings.Join(seen, ","); got != "a=1,b=2,c=bad" {
		t.Fatalf("visited %s, want keys in order with trimmed values", got)
	}
	if err == nil || err.Error() != "a refused\nc refused" {
		t.Fatalf("err = %v, want both refusals in key order", err)
	}
	if err := EachSetting(nil, func(string, string) error { return errors.New("called") }); err != nil {
		t.Fatalf("empty settings: %v", err)
	}
}
