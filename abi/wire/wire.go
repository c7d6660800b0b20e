// Package wire is what both ends of a process plugin agree on: the
// go-plugin handshake, the plugin name and the go-plugin GRPCPlugin that
// carries the pluginpb services. proxy/process (the proxy side) and
// sdk/process (the plugin side) import it.
package wire

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/wasmgate/wasmgate/abi/pluginpb"
)

// PluginName is the name under which the filter is dispensed.
const PluginName = "filter"

// ProtocolVersion is the process plugin protocol version; a plugin built
// against another version fails the handshake.
const ProtocolVersion = 1

// CookieKey and CookieValue are go-plugin's magic cookie: a plugin binary
// started by hand (not by wasmgate) sees no cookie and says so.
const (
	CookieKey   = "WASMGATE_PROCESS_PLUGIN"
	CookieValue = "a4f1c2e0-wasmgate-filter-v1"
)

// Handshake returns the go-plugin handshake config.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{ProtocolVersion: ProtocolVersion, MagicCookieKey: CookieKey, MagicCookieValue: CookieValue}
}

// Conn is what the proxy gets when it dispenses the plugin: the Filter
// client and the broker on which it serves the Host service.
type Conn struct {
	Filter pluginpb.FilterClient
	Broker *plugin.GRPCBroker
}

// GRPCPlugin is the go-plugin plugin for both ends. The plugin side sets
// NewServer; the proxy side leaves it nil and dispenses a *Conn.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// NewServer returns the Filter server; it may keep the broker to dial
	// the proxy's Host service.
	NewServer func(broker *plugin.GRPCBroker) pluginpb.FilterServer
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the Filter service (plugin side).
func (p *GRPCPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterFilterServer(s, p.NewServer(broker))
	return nil
}

// GRPCClient returns a *Conn (proxy side).
func (p *GRPCPlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return &Conn{Filter: pluginpb.NewFilterClient(cc), Broker: broker}, nil
}
