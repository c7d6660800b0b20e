// Package e2e holds end-to-end tests of the SDK: guests built from sdk/
// sources with GOOS=wasip1 run on the real host (proxy/wasm). The package
// has no code of its own; it keeps the SDK package free of proxy imports.
package e2e
