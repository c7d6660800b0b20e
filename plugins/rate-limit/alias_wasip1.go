//go:build wasip1

package main

import "unsafe"

// hostString returns b as a string for the duration of host calls without
// copying: the host copies what it keeps out of guest memory during each
// call, so the string may alias scratch memory that is reused later.
func hostString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
