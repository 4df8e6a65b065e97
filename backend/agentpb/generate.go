// Package agentpb holds the gRPC protocol between the upgate gateway and its
// container agents: agent.proto (the Agent service: files and paths),
// events.proto (the AgentEvents service: what the agent committed and what
// its hooks did) and the code generated from them.
//
// Regenerate with `go generate ./backend/agentpb` after installing protoc
// (Debian's protobuf-compiler) and the pinned plugins:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
package agentpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative agent.proto
//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative events.proto

// ScopeMetadata is the metadata key with which a call confines itself to
// one directory of the agent root, relative to it ("alice"): every path of
// the call must lie inside that directory, and the agent resolves them in
// an os.Root opened there, so that no symbolic link leads out of it. The
// gateway sends a user's root this way: without it a relative link that
// stayed inside the user's root where it was made could, once renamed
// higher up, climb into a sibling user's root on a shared agent. A call
// without it may use the whole agent root.
const ScopeMetadata = "upgate-root"

// WindowSize and BufferSize are the HTTP/2 flow-control windows and the
// transport buffers both ends of the Agent service use. Large static
// windows and buffers more than double the throughput of the 1 MiB
// messages files move in (docs/benchmarks.md); the windows equal the most
// BDP estimation would grow to, and what is in flight per file is bounded
// by the file's own request windows.
const (
	WindowSize = 16 << 20
	BufferSize = 1 << 20
)
