package agent

import (
	"path"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// clean checks a root-relative, slash-separated path from the wire and
// returns it in the form os.Root expects. The root itself is ".". It refuses
// NUL bytes, control characters and absolute paths (InvalidArgument) and
// any ".." component
// (PermissionDenied): the gateway resolves ".." before it sends a path, so
// one that arrives is an escape attempt. Symbolic links that lead outside are
// refused by os.Root itself (see toStatus).
func clean(p string) (string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", status.Errorf(codes.InvalidArgument, "path %q contains a NUL byte", p)
	}
	// Control characters (newlines, escapes) in names break listings and
	// the tools that read them; nothing legitimate needs them.
	if i := strings.IndexFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		return "", status.Errorf(codes.InvalidArgument, "path %q contains a control character", p)
	}
	if strings.HasPrefix(p, "/") {
		return "", status.Errorf(codes.InvalidArgument, "path %q is absolute; agent paths are relative to its root", p)
	}
	for _, elem := range strings.Split(p, "/") {
		if elem == ".." {
			return "", status.Errorf(codes.PermissionDenied, "path %q escapes the agent root", p)
		}
	}
	if p == "" {
		return ".", nil
	}
	return path.Clean(p), nil
}
