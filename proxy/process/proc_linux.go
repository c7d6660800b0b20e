package process

import (
	"os/exec"
	"syscall"
)

// setProcAttr asks the kernel to kill the plugin when the proxy dies
// without stopping it (the plugin also watches its parent).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
