package pluginpb

import (
	"testing"

	"google.golang.org/protobuf/reflect/protodesc"
)

// TestDescriptorGoPackage guards the hand-edited go_package inside the
// generated descriptor (the package moved from proxy/process/pluginpb).
func TestDescriptorGoPackage(t *testing.T) {
	fd := protodesc.ToFileDescriptorProto(File_plugin_proto)
	const want = "github.com/wasmgate/wasmgate/abi/pluginpb"
	if got := fd.GetOptions().GetGoPackage(); got != want {
		t.Fatalf("go_package = %q, want %q", got, want)
	}
	if fd.GetSyntax() != "proto3" {
		t.Fatalf("syntax = %q", fd.GetSyntax())
	}
}
