// Package pluginpb is the generated gRPC code of the process plugin wire
// protocol (plugin.proto), shared by proxy/process and sdk/process.
package pluginpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative plugin.proto
