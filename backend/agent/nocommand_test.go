package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agent/hooks"
	"github.com/upgate/upgate/backend/agentpb"
)

// services are every service an agent serves, as the gateway sees them.
func services() []protoreflect.ServiceDescriptor {
	var out []protoreflect.ServiceDescriptor
	for _, fd := range []protoreflect.FileDescriptor{agentpb.File_agent_proto, agentpb.File_events_proto} {
		for i := range fd.Services().Len() {
			out = append(out, fd.Services().Get(i))
		}
	}
	return out
}

// TestNoRequestFieldNamesACommand: nothing a gateway sends an agent has a
// field that could carry a command, an environment or a hook.
func TestNoRequestFieldNamesACommand(t *testing.T) {
	forbidden := []string{"command", "cmd", "argv", "args", "exec", "shell", "script", "env", "hook", "program"}
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor, where string)
	walk = func(md protoreflect.MessageDescriptor, where string) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			name := strings.ToLower(string(fd.Name()))
			for _, f := range forbidden {
				if strings.Contains(name, f) {
					t.Errorf("%s: request field %s.%s could carry a command", where, md.FullName(), fd.Name())
				}
			}
			if fd.Message() != nil {
				walk(fd.Message(), where)
			}
		}
	}
	methods := 0
	for _, sd := range services() {
		for i := range sd.Methods().Len() {
			m := sd.Methods().Get(i)
			walk(m.Input(), string(sd.Name())+"."+string(m.Name()))
			methods++
		}
	}
	if methods < 17 {
		t.Fatalf("only %d methods found: the descriptors moved", methods)
	}
}

// TestNoCallRunsACommand: the gateway has no way to make an agent run
// anything but its own hook file's commands. Every method of both
// services is called with a valid token, with every request field set
// to strings that name an executable in the agent's root or a shell
// command (and, for the file stream, every operation after an open);
// nothing they name runs, and the only process the agent starts is the
// hook file's command with the hook file's arguments.
func TestNoCallRunsACommand(t *testing.T) {
	tmp := t.TempDir()
	marker := filepath.Join(tmp, "pwned")
	hookLog := filepath.Join(tmp, "hook.log")
	recorder := filepath.Join(tmp, "record.sh")
	if err := os.WriteFile(recorder, []byte("#!/bin/sh\nprintf 'ARGV %s\\n' \"$*\" >> "+hookLog+"\ncat >> "+hookLog+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := startHooked(t, []hooks.Hook{{Name: "record", Match: []string{"**"}, On: hooks.Kinds(),
		Command: []string{recorder, "fixed-arg"}, Debounce: 50 * time.Millisecond}})
	evil := "#!/bin/sh\ntouch " + marker + "\n"
	// plant puts executables that would leave the marker back in place
	// (calls remove and replace them).
	plant := func() {
		t.Helper()
		for _, p := range []string{"evil.sh", "evil", "alice/evil.sh", "alice/evil"} {
			p = filepath.Join(a.dir, p)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			_ = os.RemoveAll(p)
			if err := os.WriteFile(p, []byte(evil), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	plant()
	st := a.subscribe(t, &agentpb.EventsRequest{})

	// An upload of an executable, made executable, renamed to another
	// executable name: committed changes the hook is told about as data.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fsys := backend.NewGRPCFs(ctx, a.cc, backend.Options{Root: "alice"})
	if err := afero.WriteFile(fsys, "/up.sh", []byte(evil), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Chmod("/up.sh", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Rename("/up.sh", "/evil-renamed.sh"); err != nil {
		t.Fatal(err)
	}

	payloads := []string{"evil.sh", "evil", "alice/evil.sh", "./evil.sh", "sh -c 'touch " + marker + "'",
		"$(touch " + marker + ")", "`touch " + marker + "`", "; touch " + marker, marker}
	calls := 0
	for _, sd := range services() {
		for i := range sd.Methods().Len() {
			m := sd.Methods().Get(i)
			full := "/" + string(sd.FullName()) + "/" + string(m.Name())
			for _, scope := range []string{"", "alice"} {
				start := time.Now()
				for _, s := range payloads {
					plant()
					reqs := requests(t, m.Input(), s)
					callMethod(t, a.cc, m, full, scope, reqs)
					calls++
				}
				if d := time.Since(start); d > time.Second {
					t.Logf("%s (scope %q): %v", full, scope, d)
				}
			}
		}
	}
	t.Logf("%d calls", calls)

	// A last change that the hook matches: once its run is reported, every
	// change before it has run the hook or never will.
	if err := os.Mkdir(filepath.Join(a.dir, "zz"), 0o755); err != nil {
		t.Fatal(err)
	}
	sentinel := func(ev *agentpb.AgentEvent) bool {
		if r := ev.GetHookRun(); r != nil {
			return slices.ContainsFunc(r.GetPaths(), func(p []byte) bool { return string(p) == "sentinel" })
		}
		return false
	}
	if _, err := agentpb.NewAgentClient(a.cc).Mkdir(ctx, &agentpb.MkdirRequest{Path: []byte("sentinel"), Perm: 0o755}); err != nil {
		t.Fatal(err)
	}
	evs := st.until(t, sentinel)

	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a call ran a command named in its request")
	}
	kinds := map[agentpb.ChangeKind]int{}
	runs := 0
	for _, ev := range evs {
		if c := ev.GetChange(); c != nil {
			kinds[c.GetKind()]++
		}
		if r := ev.GetHookRun(); r != nil {
			runs++
			if r.GetHook() != "record" || r.GetResult() != agentpb.HookResult_HOOK_RESULT_OK {
				t.Errorf("hook run %s: %v %s", r.GetHook(), r.GetResult(), r.GetError())
			}
		}
	}
	t.Logf("changes by kind: %v; hook runs: %d", kinds, runs)
	log, err := os.ReadFile(hookLog)
	if err != nil {
		t.Fatal(err)
	}
	argvs := 0
	for _, line := range strings.Split(string(log), "\n") {
		if rest, ok := strings.CutPrefix(line, "ARGV "); ok {
			argvs++
			if rest != "fixed-arg" {
				t.Errorf("the hook ran with arguments %q, not its file's", rest)
			}
		}
	}
	if argvs != runs || runs == 0 {
		t.Errorf("%d hook runs reported, %d recorded", runs, argvs)
	}
	for _, k := range []agentpb.ChangeKind{agentpb.ChangeKind_CHANGE_KIND_WRITE, agentpb.ChangeKind_CHANGE_KIND_RENAME,
		agentpb.ChangeKind_CHANGE_KIND_DELETE, agentpb.ChangeKind_CHANGE_KIND_MKDIR} {
		if kinds[k] == 0 {
			t.Errorf("no %v among the changes: the calls did not reach the hooks", k)
		}
	}
	if !strings.Contains(string(log), "alice/evil-renamed.sh\n") {
		t.Errorf("the hook was not told about the renamed upload:\n%s", log)
	}
}

// requests builds the requests one call sends: the message with every
// field set from s, one variant per member of each oneof.
func requests(t *testing.T, md protoreflect.MessageDescriptor, s string) []proto.Message {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
	if err != nil {
		t.Fatal(err)
	}
	var out []proto.Message
	oneofs := md.Oneofs()
	variants := 1
	for i := range oneofs.Len() {
		if !oneofs.Get(i).IsSynthetic() {
			variants = max(variants, oneofs.Get(i).Fields().Len())
		}
	}
	for v := range variants {
		m := mt.New()
		fill(m, s, v, 0)
		out = append(out, m.Interface())
	}
	return out
}

// fill sets every field of m from s; in each oneof, member choice (mod
// its size).
func fill(m protoreflect.Message, s string, choice, depth int) {
	md := m.Descriptor()
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		if o := fd.ContainingOneof(); o != nil && !o.IsSynthetic() {
			if o.Fields().Get(choice%o.Fields().Len()) != fd {
				continue
			}
		}
		switch {
		case fd.IsMap():
			continue
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				if depth < 4 {
					fill(m.Mutable(fd).List().AppendMutable().Message(), s, choice, depth+1)
				}
				continue
			}
			m.Mutable(fd).List().Append(scalar(fd, s))
		case fd.Kind() == protoreflect.MessageKind:
			if depth < 4 {
				fill(m.Mutable(fd).Message(), s, choice, depth+1)
			}
		default:
			m.Set(fd, scalar(fd, s))
		}
	}
}

func scalar(fd protoreflect.FieldDescriptor, s string) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(s)
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(s))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(vals.Len() - 1).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(0o755)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(0o755)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(0o755)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(0o755)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(1)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(1)
	}
	panic("unhandled kind " + fd.Kind().String())
}

// callMethod makes one call of m with reqs (a stream sends them all),
// under scope; errors are expected and ignored, hangs are not.
func callMethod(t *testing.T, cc *grpc.ClientConn, m protoreflect.MethodDescriptor, full, scope string, reqs []proto.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if scope != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, agentpb.ScopeMetadata, scope)
	}
	out, err := protoregistry.GlobalTypes.FindMessageByName(m.Output().FullName())
	if err != nil {
		t.Fatal(err)
	}
	if !m.IsStreamingClient() && !m.IsStreamingServer() {
		for _, req := range reqs {
			_ = cc.Invoke(ctx, full, req, out.New().Interface())
		}
		return
	}
	desc := &grpc.StreamDesc{StreamName: string(m.Name()), ServerStreams: m.IsStreamingServer(), ClientStreams: m.IsStreamingClient()}
	if !m.IsStreamingClient() {
		for _, req := range reqs {
			sctx, scancel := context.WithCancel(ctx)
			cs, err := cc.NewStream(sctx, desc, full)
			if err == nil && cs.SendMsg(req) == nil && cs.CloseSend() == nil {
				// The events stream never ends by itself: its Hello is
				// enough.
				for range 100 {
					if cs.RecvMsg(out.New().Interface()) != nil || m.Name() == "Events" {
						break
					}
				}
			}
			scancel()
		}
		return
	}
	// The file stream: each request as the first (an open, or refused),
	// followed by every other variant.
	for i := range reqs {
		sctx, scancel := context.WithCancel(ctx)
		cs, err := cc.NewStream(sctx, desc, full)
		if err == nil {
			for _, req := range append([]proto.Message{reqs[i]}, reqs...) {
				if cs.SendMsg(req) != nil || cs.RecvMsg(out.New().Interface()) != nil {
					break
				}
			}
			_ = cs.CloseSend()
		}
		scancel()
	}
}
