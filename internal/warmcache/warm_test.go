package warmcache

import "testing"

func TestWarmCache(t *testing.T) { Run(t) }
