// Package inject adds the upgate agent as a sidecar to Kubernetes
// workloads: "upgate inject" reads YAML (a Deployment, a StatefulSet or a
// Pod, or a multi-document stream holding them among other objects) and
// writes it back with, in each pod template:
//
//   - a container named upgate-agent running "upgate agent" with --root,
//     --listen and --token-file, as the uid (and gid) the app container
//     runs as, non-root, with a read-only root filesystem, tcpSocket
//     probes on its port and resource requests and limits;
//   - the app container's volume that holds --root, mounted at the same
//     path in the agent, so that the agent writes where the app reads;
//   - a volume with the agent token from a Secret;
//   - with Options.Hooks, the agent's hook file from a ConfigMap
//     (--hooks) and a scratch directory at /tmp for the hooks;
//   - the labels that the gateway's selector (agents.NAME.kubernetes.
//     selector, "{user}" filled in) expects, so that the gateway finds the
//     pod.
//
// Injecting is idempotent: an existing upgate-agent container, token
// volume and labels are replaced by what the options say, in place, so
// running it twice yields the same bytes. Comments and the order of keys
// are kept. What it cannot handle (another workload kind, an app
// container with no volume at --root, no uid to run as, a selector that
// labels cannot satisfy) is an error that says why, and nothing is
// written.
package inject

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// Defaults of Options.
const (
	DefaultSelector    = "upgate.dev/user={user}"
	DefaultPort        = 7070
	DefaultTokenSecret = "upgate-agent-token"
	DefaultTokenKey    = "token"
	// AgentContainer is the sidecar's name, which the gateway's
	// agents.NAME.kubernetes.container defaults to.
	AgentContainer = "upgate-agent"
	// tokenDir is where the agent's token Secret is mounted.
	tokenDir = "/var/run/secrets/upgate"
	// hooksDir is where the hooks ConfigMap is mounted.
	hooksDir = "/etc/upgate/hooks"
	// The volumes inject adds.
	tokenVolume = "upgate-agent-token"
	hooksVolume = "upgate-agent-hooks"
	tmpVolume   = "upgate-agent-tmp"
)

// Options say what to inject. User and Root are required, and Image or
// Command.
type Options struct {
	// Image is the image the agent runs: the gateway's (its entrypoint is
	// upgate), or an image with the upgate binary at Command. Empty, with
	// Command set, means the app container's own image, which must then
	// hold the upgate binary (hooks run with the app's tools).
	Image string
	// Command is the path of the upgate binary in Image, for an image
	// whose entrypoint is not upgate (the app's). Empty means Image's
	// entrypoint.
	Command string
	// Hooks names a ConfigMap in the pod's namespace whose key hooks.yaml
	// holds the agent's hooks (upgate agent --hooks): it is mounted at
	// /etc/upgate/hooks, with an emptyDir at /tmp for the hooks' scratch
	// files (the root filesystem is read-only) and room for them in the
	// memory limit. Empty means no hooks.
	Hooks string
	// User is the developer whose pod this is: it fills "{user}" in
	// Selector.
	User string
	// Selector is the gateway's label selector template
	// (agents.NAME.kubernetes.selector). Its "=" and "in" (one value)
	// requirements become pod labels; the result must match it. Empty
	// means DefaultSelector.
	Selector string
	// Root is the directory the agent serves: a path in the app
	// container that a volume holds (the code).
	Root string
	// Container names the app container. Empty means the pod's only
	// container, or the only one with a volume at Root.
	Container string
	// Port is the agent's port (agents.NAME.kubernetes.port). Zero means
	// DefaultPort.
	Port int
	// TokenSecret and TokenKey name the Secret and key holding the agent
	// token. Empty means DefaultTokenSecret and DefaultTokenKey.
	TokenSecret, TokenKey string
	// UID and GID, if non-nil, are the uid and gid the agent runs as;
	// nil means the app container's (its runAsUser/runAsGroup, else the
	// pod's).
	UID, GID *int64
}

// Inject reads YAML documents from r and writes them to w, each
// Deployment, StatefulSet and Pod with the agent sidecar. Other documents
// pass unchanged; other workload kinds are refused. The errors start with
// "inject: " and name the document.
func Inject(r io.Reader, w io.Writer, opts Options) error {
	if opts.Image == "" && opts.Command == "" || opts.User == "" || opts.Root == "" {
		return errors.New("inject: a user, a root and an image (or the command of upgate in the app's image) are required")
	}
	if !path.IsAbs(opts.Root) || path.Clean(opts.Root) != opts.Root {
		return fmt.Errorf("inject: root %q must be an absolute, clean path", opts.Root)
	}
	if opts.Selector == "" {
		opts.Selector = DefaultSelector
	}
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	if opts.Port < 1 || opts.Port > 65535 {
		return fmt.Errorf("inject: port %d is not 1-65535", opts.Port)
	}
	if opts.TokenSecret == "" {
		opts.TokenSecret = DefaultTokenSecret
	}
	if opts.TokenKey == "" {
		opts.TokenKey = DefaultTokenKey
	}
	sel, err := labels.Parse(strings.ReplaceAll(opts.Selector, "{user}", opts.User))
	if err != nil {
		return fmt.Errorf("inject: selector %q for user %q: %w", opts.Selector, opts.User, err)
	}

	dec := yaml.NewDecoder(r)
	var docs []*yaml.Node
	workloads := 0
	for i := 0; ; i++ {
		doc := new(yaml.Node)
		if err := dec.Decode(doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("inject: document %d: %w", i, err)
		}
		if len(doc.Content) == 0 {
			continue
		}
		ok, err := injectDoc(doc.Content[0], opts, sel)
		if err != nil {
			return fmt.Errorf("inject: document %d%s: %w", i, describe(doc.Content[0]), err)
		}
		if ok {
			workloads++
		}
		docs = append(docs, doc)
	}
	if workloads == 0 {
		return errors.New("inject: no Deployment, StatefulSet or Pod in the input")
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	for _, doc := range docs {
		if err := enc.Encode(doc); err != nil {
			return fmt.Errorf("inject: %w", err)
		}
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("inject: %w", err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// describe names a document for errors: " (Deployment alice-php)".
func describe(n *yaml.Node) string {
	kind := scalar(get(n, "kind"))
	name := scalar(get(get(n, "metadata"), "name"))
	if kind == "" && name == "" {
		return ""
	}
	return fmt.Sprintf(" (%s %s)", kind, name)
}

// refused are workload kinds that are not a developer's pod.
var refused = map[string]string{
	"DaemonSet":             "a DaemonSet runs a pod per node, not per developer",
	"ReplicaSet":            "inject the Deployment that owns it",
	"ReplicationController": "use a Deployment",
	"Job":                   "a Job's pod ends; a dev pod runs",
	"CronJob":               "a CronJob's pods end; a dev pod runs",
	"List":                  "give the items as a multi-document stream (---)",
}

// injectDoc adds the sidecar to one document; false means the document
// is not a workload and passes unchanged.
func injectDoc(n *yaml.Node, opts Options, sel labels.Selector) (bool, error) {
	if n.Kind != yaml.MappingNode {
		return false, nil
	}
	kind, apiVersion := scalar(get(n, "kind")), scalar(get(n, "apiVersion"))
	var meta, spec *yaml.Node
	switch {
	case kind == "Pod" && apiVersion == "v1":
		meta, spec = get(n, "metadata"), get(n, "spec")
	case (kind == "Deployment" || kind == "StatefulSet") && apiVersion == "apps/v1":
		tmpl := get(get(n, "spec"), "template")
		meta, spec = get(tmpl, "metadata"), get(tmpl, "spec")
		if tmpl == nil {
			return false, errors.New("no spec.template")
		}
		if meta == nil {
			meta = set(tmpl, "metadata", mapping())
		}
	case refused[kind] != "":
		return false, fmt.Errorf("%s is not handled: %s", kind, refused[kind])
	case kind == "Deployment" || kind == "StatefulSet" || kind == "Pod":
		return false, fmt.Errorf("apiVersion %q is not handled: want apps/v1 (v1 for a Pod)", apiVersion)
	default:
		return false, nil
	}
	if spec == nil {
		return false, errors.New("no pod spec")
	}
	if meta == nil {
		meta = set(n, "metadata", mapping())
	}
	return true, injectPod(meta, spec, opts, sel)
}

// injectPod adds the sidecar, the volumes and the labels to a pod's
// metadata and spec.
func injectPod(meta, spec *yaml.Node, opts Options, sel labels.Selector) error {
	containers := get(spec, "containers")
	if containers == nil || containers.Kind != yaml.SequenceNode || len(containers.Content) == 0 {
		return errors.New("no containers")
	}
	app, err := appContainer(containers, opts)
	if err != nil {
		return err
	}
	appName := scalar(get(app, "name"))
	mount := rootMount(app, opts.Root)
	if mount == nil {
		return fmt.Errorf("container %s has no volume at %s: the agent writes where the app reads through a volume both mount (an emptyDir or a PersistentVolumeClaim at %s)", appName, opts.Root, opts.Root)
	}
	for _, c := range containers.Content {
		if scalar(get(c, "name")) == AgentContainer {
			continue
		}
		for _, p := range seq(get(c, "ports")) {
			if scalar(get(p, "containerPort")) == strconv.Itoa(opts.Port) {
				return fmt.Errorf("port %d is taken by container %s: choose another --port (and agents.NAME.kubernetes.port)", opts.Port, scalar(get(c, "name")))
			}
		}
	}
	psc := get(spec, "securityContext")
	uid, err := id(opts.UID, get(app, "securityContext"), psc, "runAsUser")
	if err != nil {
		return err
	}
	if uid == nil {
		return fmt.Errorf("no runAsUser on container %s or the pod: give the uid it runs as with --uid (the agent writes files as that uid)", appName)
	}
	if *uid == 0 {
		return fmt.Errorf("container %s runs as root (uid 0): the agent runs as non-root, give the uid that should own the files with --uid", appName)
	}
	gid, err := id(opts.GID, get(app, "securityContext"), psc, "runAsGroup")
	if err != nil {
		return err
	}

	// The token volume: readable by the agent's group when the pod has
	// an fsGroup (the files are then group-owned), else by all.
	mode := "0444"
	if get(psc, "fsGroup") != nil {
		mode = "0440"
	}
	tokenVol := mapping(
		"name", str(tokenVolume),
		"secret", mapping(
			"secretName", str(opts.TokenSecret),
			"items", sequence(flow(mapping("key", str(opts.TokenKey), "path", str("token")))),
			"defaultMode", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: mode},
		),
	)
	tokenVol.HeadComment = "The upgate agent's token (upgate inject)."
	volumes := get(spec, "volumes")
	if volumes == nil {
		volumes = set(spec, "volumes", sequence())
	}
	replaceOrAppend(volumes, tokenVolume, tokenVol)
	if opts.Hooks != "" {
		hooksVol := mapping("name", str(hooksVolume), "configMap", mapping("name", str(opts.Hooks), "items", sequence(flow(mapping("key", str("hooks.yaml"), "path", str("hooks.yaml"))))))
		hooksVol.HeadComment = "The upgate agent's hooks (upgate inject)."
		replaceOrAppend(volumes, hooksVolume, hooksVol)
		tmpVol := mapping("name", str(tmpVolume), "emptyDir", mapping("sizeLimit", str("256Mi")))
		tmpVol.HeadComment = "The hooks' scratch space (upgate inject): the agent's root filesystem is read-only."
		replaceOrAppend(volumes, tmpVolume, tmpVol)
	} else {
		remove(volumes, hooksVolume)
		remove(volumes, tmpVolume)
	}
	image := opts.Image
	if image == "" {
		image = scalar(get(app, "image"))
	}
	replaceOrAppend(containers, AgentContainer, agentContainer(opts, image, appName, mount, uid, gid))

	// The labels the gateway's selector expects.
	lbl := get(meta, "labels")
	if lbl == nil {
		lbl = set(meta, "labels", mapping())
	}
	have := labels.Set{}
	for i := 0; i+1 < len(lbl.Content); i += 2 {
		have[lbl.Content[i].Value] = lbl.Content[i+1].Value
	}
	reqs, _ := sel.Requirements()
	for _, r := range reqs {
		vals := r.ValuesUnsorted()
		if (r.Operator() == selection.Equals || r.Operator() == selection.DoubleEquals || r.Operator() == selection.In) && len(vals) == 1 {
			if v, ok := have[r.Key()]; ok && v != vals[0] && r.Operator() != selection.In {
				return fmt.Errorf("label %s is %q, but the selector %s wants %q", r.Key(), v, sel, vals[0])
			}
			if !r.Matches(have) {
				set(lbl, r.Key(), str(vals[0]))
				have[r.Key()] = vals[0]
			}
		}
	}
	if !sel.Matches(have) {
		return fmt.Errorf("the pod's labels %s do not match the selector %s, and adding labels cannot fix it", have, sel)
	}
	return nil
}

// agentContainer is the sidecar.
func agentContainer(opts Options, image, app string, mount *yaml.Node, uid, gid *int64) *yaml.Node {
	port := strconv.Itoa(opts.Port)
	sc := mapping(
		"runAsNonRoot", boolean(true),
		"runAsUser", integer(*uid),
	)
	if gid != nil {
		set(sc, "runAsGroup", integer(*gid))
	}
	set(sc, "readOnlyRootFilesystem", boolean(true))
	set(sc, "allowPrivilegeEscalation", boolean(false))
	set(sc, "privileged", boolean(false))
	set(sc, "capabilities", mapping("drop", flow(sequence(str("ALL")))))
	set(sc, "seccompProfile", mapping("type", str("RuntimeDefault")))

	codeMount := mapping("name", str(scalar(get(mount, "name"))), "mountPath", str(scalar(get(mount, "mountPath"))))
	if sp := get(mount, "subPath"); sp != nil {
		set(codeMount, "subPath", str(sp.Value))
	}
	args := sequence(str("agent"), str("--listen"), str(":"+port), str("--root"), str(opts.Root), str("--token-file"), str(tokenDir+"/token"))
	mounts := sequence(
		flow(codeMount),
		flow(mapping("name", str(tokenVolume), "mountPath", str(tokenDir), "readOnly", boolean(true))),
	)
	memory := "256Mi"
	if opts.Hooks != "" {
		args.Content = append(args.Content, str("--hooks"), str(hooksDir+"/hooks.yaml"))
		mounts.Content = append(mounts.Content,
			flow(mapping("name", str(hooksVolume), "mountPath", str(hooksDir), "readOnly", boolean(true))),
			flow(mapping("name", str(tmpVolume), "mountPath", str("/tmp"))))
		memory = "512Mi" // the hooks run in this container
	}
	c := mapping(
		"name", str(AgentContainer),
		"image", str(image),
		"imagePullPolicy", str("IfNotPresent"),
	)
	if opts.Command != "" {
		set(c, "command", flow(sequence(str(opts.Command))))
	}
	for _, kv := range []struct {
		k string
		v *yaml.Node
	}{
		{"args", args},
		{"ports", sequence(flow(mapping("name", str(AgentContainer), "containerPort", integer(int64(opts.Port)), "protocol", str("TCP"))))},
		// The agent speaks gRPC with a token on every call: probe its port.
		{"readinessProbe", mapping("tcpSocket", flow(mapping("port", str(AgentContainer))), "periodSeconds", integer(5))},
		{"livenessProbe", mapping("tcpSocket", flow(mapping("port", str(AgentContainer))), "initialDelaySeconds", integer(5), "periodSeconds", integer(20))},
		{"resources", mapping(
			"requests", flow(mapping("cpu", str("10m"), "memory", str("32Mi"))),
			"limits", flow(mapping("cpu", str("1"), "memory", str(memory))),
		)},
		{"securityContext", sc},
		{"volumeMounts", mounts},
	} {
		set(c, kv.k, kv.v)
	}
	c.HeadComment = fmt.Sprintf("The upgate agent (upgate inject): writes the uploads into %s,\nshared with %s, as its uid; the gateway finds it by this pod's labels.", opts.Root, app)
	if opts.Hooks != "" {
		c.HeadComment += fmt.Sprintf("\nIt runs the hooks of the ConfigMap %s after saves.", opts.Hooks)
	}
	return c
}

// appContainer finds the app container.
func appContainer(containers *yaml.Node, opts Options) (*yaml.Node, error) {
	var names []string
	var candidates, withRoot []*yaml.Node
	for _, c := range containers.Content {
		name := scalar(get(c, "name"))
		if name == AgentContainer {
			continue
		}
		names = append(names, name)
		if opts.Container != "" && name == opts.Container {
			return c, nil
		}
		candidates = append(candidates, c)
		if rootMount(c, opts.Root) != nil {
			withRoot = append(withRoot, c)
		}
	}
	switch {
	case opts.Container != "":
		return nil, fmt.Errorf("no container %s (containers: %s)", opts.Container, strings.Join(names, ", "))
	case len(candidates) == 1:
		return candidates[0], nil
	case len(withRoot) == 1:
		return withRoot[0], nil
	}
	return nil, fmt.Errorf("containers %s: name the app container with --container", strings.Join(names, ", "))
}

// rootMount returns the container's volume mount that holds root (the
// deepest one), or nil.
func rootMount(c *yaml.Node, root string) *yaml.Node {
	var best *yaml.Node
	bestLen := -1
	for _, m := range seq(get(c, "volumeMounts")) {
		mp := path.Clean(scalar(get(m, "mountPath")))
		if (root == mp || strings.HasPrefix(root, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > bestLen {
			best, bestLen = m, len(mp)
		}
	}
	return best
}

// id returns the uid or gid (key runAsUser or runAsGroup): the override,
// else the container's security context, else the pod's.
func id(override *int64, containerSC, podSC *yaml.Node, key string) (*int64, error) {
	if override != nil {
		return override, nil
	}
	for _, sc := range []*yaml.Node{containerSC, podSC} {
		if v := get(sc, key); v != nil {
			n, err := strconv.ParseInt(v.Value, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s %q is not a number", key, v.Value)
			}
			return &n, nil
		}
	}
	return nil, nil
}

// replaceOrAppend puts item into the sequence: in place of the entry of
// the same name, else at the end.
func replaceOrAppend(s *yaml.Node, name string, item *yaml.Node) {
	for i, c := range s.Content {
		if scalar(get(c, "name")) == name {
			s.Content[i] = item
			return
		}
	}
	s.Content = append(s.Content, item)
}

// remove drops the entry of that name from the sequence, if any.
func remove(s *yaml.Node, name string) {
	s.Content = slices.DeleteFunc(s.Content, func(c *yaml.Node) bool { return scalar(get(c, "name")) == name })
}

// YAML node helpers.

// get returns the value of key in mapping n, or nil.
func get(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// set sets key in mapping n to v, in place if present, else at the end,
// and returns v.
func set(n *yaml.Node, key string, v *yaml.Node) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			v.HeadComment = cmp.Or(v.HeadComment, n.Content[i+1].HeadComment)
			n.Content[i+1] = v
			return v
		}
	}
	n.Content = append(n.Content, str(key), v)
	return v
}

func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

func seq(n *yaml.Node) []*yaml.Node {
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	return n.Content
}

func mapping(kv ...any) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for i := 0; i+1 < len(kv); i += 2 {
		n.Content = append(n.Content, str(kv[i].(string)), kv[i+1].(*yaml.Node))
	}
	return n
}

func sequence(items ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: slices.Clone(items)}
}

func flow(n *yaml.Node) *yaml.Node {
	n.Style = yaml.FlowStyle
	return n
}

func str(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	// Quote what would read as another type ("1", "true") or starts
	// with an indicator (":7070").
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil || fmt.Sprint(v) != s || s == "" || strings.ContainsRune(":,[]{}#&*!|>'\"%@`", rune(s[0])) ||
		strings.ContainsRune("-?", rune(s[0])) && (len(s) == 1 || s[1] == ' ') {
		n.Style = yaml.DoubleQuotedStyle
	} else if _, ok := v.(string); !ok {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

func integer(i int64) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(i, 10)}
}

func boolean(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}
