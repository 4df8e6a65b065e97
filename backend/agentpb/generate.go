// Package agentpb holds the gRPC protocol between the upgate gateway and its
// container agents: agent.proto and the code generated from it.
//
// Regenerate with `go generate ./backend/agentpb` after installing protoc
// (Debian's protobuf-compiler) and the pinned plugins:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
package agentpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative agent.proto
