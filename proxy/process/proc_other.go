//go:build !linux

package process

import "os/exec"

// setProcAttr does nothing here; the plugin watches its parent.
func setProcAttr(*exec.Cmd) {}
