package inject_test

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/upgate/upgate/internal/inject"
)

const image = "registry.example.com/upgate/upgate:v1"

func opts() inject.Options {
	return inject.Options{Image: image, User: "alice", Root: "/var/www/html"}
}

// run injects in, checks that injecting the result again changes nothing,
// and returns the result.
func run(t *testing.T, in string, o inject.Options) string {
	t.Helper()
	var out bytes.Buffer
	if err := inject.Inject(strings.NewReader(in), &out, o); err != nil {
		t.Fatalf("Inject: %v", err)
	}
	var again bytes.Buffer
	if err := inject.Inject(bytes.NewReader(out.Bytes()), &again, o); err != nil {
		t.Fatalf("Inject of its own output: %v", err)
	}
	if again.String() != out.String() {
		t.Errorf("not idempotent: first\n%s\nsecond\n%s", out.String(), again.String())
	}
	return out.String()
}

// docs splits a stream into documents.
func docs(s string) []string {
	var out []string
	for _, d := range regexp.MustCompile(`(?m)^---\n`).Split(s, -1) {
		if strings.TrimSpace(d) != "" {
			out = append(out, d)
		}
	}
	return out
}

// strict decodes a document into a Kubernetes type, refusing unknown
// fields, as the API server would.
func strict(t *testing.T, doc string, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
}

const pod = `apiVersion: v1
kind: Pod
metadata:
  name: alice-php
  namespace: dev
spec:
  securityContext: {runAsUser: 33, runAsGroup: 33, fsGroup: 33}
  containers:
    - name: php-fpm   # the app
      image: php:8.3-fpm
      volumeMounts:
        - {name: code, mountPath: /var/www}
  volumes:
    - {name: code, emptyDir: {}}
`

// checkAgent checks the sidecar of a pod spec and returns it.
func checkAgent(t *testing.T, spec *corev1.PodSpec, uid int64, mode int32, root string) *corev1.Container {
	t.Helper()
	var agent *corev1.Container
	for i := range spec.Containers {
		if spec.Containers[i].Name == inject.AgentContainer {
			if agent != nil {
				t.Fatal("two agent containers")
			}
			agent = &spec.Containers[i]
		}
	}
	if agent == nil {
		t.Fatal("no agent container")
	}
	if agent.Image != image {
		t.Errorf("image %s", agent.Image)
	}
	if want := []string{"agent", "--listen", ":7070", "--root", root, "--token-file", "/var/run/secrets/upgate/token"}; !slices.Equal(agent.Args, want) {
		t.Errorf("args %q, want %q", agent.Args, want)
	}
	if len(agent.Ports) != 1 || agent.Ports[0].ContainerPort != 7070 || agent.Ports[0].Name != "upgate-agent" {
		t.Errorf("ports %+v", agent.Ports)
	}
	if agent.ReadinessProbe == nil || agent.ReadinessProbe.TCPSocket == nil || agent.ReadinessProbe.TCPSocket.Port.StrVal != "upgate-agent" ||
		agent.LivenessProbe == nil || agent.LivenessProbe.TCPSocket == nil {
		t.Errorf("probes %+v %+v", agent.ReadinessProbe, agent.LivenessProbe)
	}
	if agent.Resources.Requests.Memory().IsZero() || agent.Resources.Limits.Memory().IsZero() || agent.Resources.Requests.Cpu().IsZero() {
		t.Errorf("resources %+v", agent.Resources)
	}
	sc := agent.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != uid || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("securityContext %+v", sc)
	}
	var tokenVol *corev1.Volume
	for i := range spec.Volumes {
		if spec.Volumes[i].Secret != nil && spec.Volumes[i].Secret.SecretName == "upgate-agent-token" {
			tokenVol = &spec.Volumes[i]
		}
	}
	if tokenVol == nil || tokenVol.Secret.DefaultMode == nil || *tokenVol.Secret.DefaultMode != mode ||
		len(tokenVol.Secret.Items) != 1 || tokenVol.Secret.Items[0].Key != "token" || tokenVol.Secret.Items[0].Path != "token" {
		t.Fatalf("token volume %+v", tokenVol)
	}
	var mounted bool
	for _, m := range agent.VolumeMounts {
		if m.Name == tokenVol.Name && m.MountPath == "/var/run/secrets/upgate" && m.ReadOnly {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("token volume not mounted read-only at /var/run/secrets/upgate: %+v", agent.VolumeMounts)
	}
	return agent
}

// hasMount reports whether c mounts exactly m (writable).
func hasMount(c *corev1.Container, m corev1.VolumeMount) bool {
	return slices.ContainsFunc(c.VolumeMounts, func(v corev1.VolumeMount) bool {
		return v.Name == m.Name && v.MountPath == m.MountPath && v.SubPath == m.SubPath && v.ReadOnly == m.ReadOnly
	})
}

func TestPod(t *testing.T) {
	out := run(t, pod, opts())
	var p corev1.Pod
	strict(t, out, &p)
	agent := checkAgent(t, &p.Spec, 33, 0o440, "/var/www/html")
	// The code volume, mounted where the app mounts it.
	if want := (corev1.VolumeMount{Name: "code", MountPath: "/var/www"}); !hasMount(agent, want) {
		t.Errorf("agent mounts %+v, want %+v", agent.VolumeMounts, want)
	}
	if sc := agent.SecurityContext; sc.RunAsGroup == nil || *sc.RunAsGroup != 33 {
		t.Errorf("runAsGroup %v, want the pod's 33", sc.RunAsGroup)
	}
	if p.Labels["upgate.dev/user"] != "alice" {
		t.Errorf("labels %v", p.Labels)
	}
	if p.Spec.Containers[0].Name != "php-fpm" || len(p.Spec.Containers) != 2 {
		t.Errorf("containers %+v", p.Spec.Containers)
	}
	if !strings.Contains(out, "- name: php-fpm # the app") {
		t.Errorf("comment lost:\n%s", out)
	}
}

// TestStreamAndStatefulSet: a multi-document stream; the StatefulSet and
// the Deployment get the agent in their pod templates, with the labels the
// selector wants; the Service passes unchanged; the uid comes from the app
// container or the pod, a subPath is kept, and the token's mode depends on
// an fsGroup.
func TestStreamAndStatefulSet(t *testing.T) {
	in := `# the app, as applied
apiVersion: v1
kind: Service
metadata: {name: web, namespace: dev}
spec:
  selector: {app: php}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: alice-php, namespace: dev}
spec:
  serviceName: web
  selector: {matchLabels: {app: php}}
  template:
    metadata: {labels: {app: php}}
    spec:
      containers:
        - name: nginx
          image: nginx
        - name: php
          image: php
          securityContext: {runAsUser: 1000}
          volumeMounts:
            - {name: data, mountPath: /srv, subPath: site}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: alice-api, namespace: dev}
spec:
  selector: {matchLabels: {app: api}}
  template:
    spec:
      securityContext: {runAsUser: 3000, fsGroup: 3000}
      containers:
        - name: api
          image: api
          volumeMounts: [{name: code, mountPath: /srv/public}]
`
	o := opts()
	o.Root = "/srv/public"
	o.Selector = "upgate.dev/user={user},tier in (dev)"
	out := run(t, in, o)
	ds := docs(out)
	if len(ds) != 3 {
		t.Fatalf("%d documents, want 3:\n%s", len(ds), out)
	}
	if !strings.HasPrefix(ds[0], "# the app, as applied\napiVersion: v1\nkind: Service") || strings.Contains(ds[0], "upgate") {
		t.Errorf("the Service changed:\n%s", ds[0])
	}
	sel := labels.SelectorFromSet(labels.Set{"upgate.dev/user": "alice", "tier": "dev"})

	var ss appsv1.StatefulSet
	strict(t, ds[1], &ss)
	agent := checkAgent(t, &ss.Spec.Template.Spec, 1000, 0o444, "/srv/public")
	if want := (corev1.VolumeMount{Name: "data", MountPath: "/srv", SubPath: "site"}); !hasMount(agent, want) {
		t.Errorf("agent mounts %+v, want %+v", agent.VolumeMounts, want)
	}
	if sc := agent.SecurityContext; sc.RunAsGroup != nil {
		t.Errorf("runAsGroup %d, want none (the app sets none)", *sc.RunAsGroup)
	}
	if !sel.Matches(labels.Set(ss.Spec.Template.Labels)) || ss.Spec.Template.Labels["app"] != "php" {
		t.Errorf("template labels %v", ss.Spec.Template.Labels)
	}

	var d appsv1.Deployment
	strict(t, ds[2], &d)
	checkAgent(t, &d.Spec.Template.Spec, 3000, 0o440, "/srv/public")
	if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("template labels %v do not match %s", d.Spec.Template.Labels, sel)
	}

	// One document it cannot handle refuses the whole stream.
	o.Root = "/srv/public/web"
	in = strings.Replace(in, "mountPath: /srv/public}", "mountPath: /srv/api}", 1)
	var buf bytes.Buffer
	if err := inject.Inject(strings.NewReader(in), &buf, o); err == nil || !strings.Contains(err.Error(), "inject: document 2 (Deployment alice-api): container api has no volume at /srv/public/web") {
		t.Errorf("a stream with a Deployment it cannot inject: %v", err)
	}
}

// TestUIDOverride: --uid and --gid win over the pod's ids.
func TestUIDOverride(t *testing.T) {
	o := opts()
	uid, gid := int64(1001), int64(1002)
	o.UID, o.GID = &uid, &gid
	var p corev1.Pod
	strict(t, run(t, pod, o), &p)
	agent := checkAgent(t, &p.Spec, 1001, 0o440, "/var/www/html")
	if sc := agent.SecurityContext; sc.RunAsGroup == nil || *sc.RunAsGroup != 1002 {
		t.Errorf("runAsGroup %v, want 1002", sc.RunAsGroup)
	}
}

// TestAppImageWithHooks: the agent in the app's own image (upgate at
// --command) with the hooks of a ConfigMap; injecting again without hooks
// takes them out.
func TestAppImageWithHooks(t *testing.T) {
	o := opts()
	o.Image, o.Command, o.Hooks = "", "/usr/local/bin/upgate", "upgate-hooks"
	var p corev1.Pod
	out := run(t, pod, o)
	strict(t, out, &p)
	var agent *corev1.Container
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == inject.AgentContainer {
			agent = &p.Spec.Containers[i]
		}
	}
	if agent == nil || agent.Image != "php:8.3-fpm" || !slices.Equal(agent.Command, []string{"/usr/local/bin/upgate"}) {
		t.Fatalf("agent %+v: want the app's image with command /usr/local/bin/upgate", agent)
	}
	if n := len(agent.Args); n < 2 || agent.Args[n-2] != "--hooks" || agent.Args[n-1] != "/etc/upgate/hooks/hooks.yaml" {
		t.Errorf("args %q: want --hooks /etc/upgate/hooks/hooks.yaml", agent.Args)
	}
	if !hasMount(agent, corev1.VolumeMount{Name: "upgate-agent-hooks", MountPath: "/etc/upgate/hooks", ReadOnly: true}) || !hasMount(agent, corev1.VolumeMount{Name: "upgate-agent-tmp", MountPath: "/tmp"}) {
		t.Errorf("mounts %+v", agent.VolumeMounts)
	}
	if lim := agent.Resources.Limits.Memory().String(); lim != "512Mi" {
		t.Errorf("memory limit %s, want 512Mi (the hooks run there)", lim)
	}
	var cm *corev1.Volume
	for i := range p.Spec.Volumes {
		if p.Spec.Volumes[i].ConfigMap != nil {
			cm = &p.Spec.Volumes[i]
		}
	}
	if cm == nil || cm.ConfigMap.Name != "upgate-hooks" || len(cm.ConfigMap.Items) != 1 || cm.ConfigMap.Items[0].Key != "hooks.yaml" {
		t.Errorf("hooks volume %+v", cm)
	}
	// Without hooks again.
	o.Hooks = ""
	var plain bytes.Buffer
	must(t, inject.Inject(strings.NewReader(out), &plain, o))
	if strings.Contains(plain.String(), "hooks") || strings.Contains(plain.String(), "upgate-agent-tmp") {
		t.Errorf("hooks left after injecting without them:\n%s", plain.String())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestReinjectUpdates: injecting over an older injection replaces the
// agent in place (a new image), keeping the rest.
func TestReinjectUpdates(t *testing.T) {
	first := run(t, pod, opts())
	o := opts()
	o.Image = "registry.example.com/upgate/upgate:v2"
	second := run(t, first, o)
	if strings.Count(second, "name: upgate-agent\n") != 1 || !strings.Contains(second, "upgate:v2") || strings.Contains(second, "upgate:v1") {
		t.Errorf("re-injection:\n%s", second)
	}
	if strings.ReplaceAll(second, "upgate:v2", "upgate:v1") != first {
		t.Errorf("re-injection changed more than the image:\n%s\nwas\n%s", second, first)
	}
}

func TestRefused(t *testing.T) {
	deployment := func(spec string) string {
		return "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n" + spec
	}
	const app = "      securityContext: {runAsUser: 33}\n      containers:\n        - {name: php, image: php, volumeMounts: [{name: code, mountPath: /var/www/html}]}\n"
	tests := []struct {
		name string
		in   string
		edit func(*inject.Options)
		want string
	}{
		{"daemonset", "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\n", nil, "inject: document 0 (DaemonSet x): DaemonSet is not handled: a DaemonSet runs a pod per node, not per developer"},
		{"job", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\n", nil, "Job is not handled"},
		{"list", "apiVersion: v1\nkind: List\nitems: []\n", nil, "List is not handled: give the items as a multi-document stream (---)"},
		{"old apiVersion", "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: x}\n", nil, `apiVersion "extensions/v1beta1" is not handled`},
		{"nothing to inject", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n", nil, "inject: no Deployment, StatefulSet or Pod in the input"},
		{"not yaml", "a: [\n", nil, "inject: document 0: yaml:"},
		{"no containers", deployment("      containers: []\n"), nil, "no containers"},
		{"no volume at root", deployment("      securityContext: {runAsUser: 33}\n      containers: [{name: php, image: php}]\n"), nil,
			"container php has no volume at /var/www/html: the agent writes where the app reads through a volume both mount"},
		{"no uid", deployment("      containers:\n        - {name: php, image: php, volumeMounts: [{name: code, mountPath: /var/www/html}]}\n"), nil,
			"no runAsUser on container php or the pod: give the uid it runs as with --uid"},
		{"root", deployment(strings.Replace(app, "runAsUser: 33", "runAsUser: 0", 1)), nil, "container php runs as root (uid 0)"},
		{"port taken", deployment(strings.Replace(app, "image: php,", "image: php, ports: [{containerPort: 7070}],", 1)), nil, "port 7070 is taken by container php"},
		{"which container", deployment(app + "        - {name: worker, image: php, volumeMounts: [{name: code, mountPath: /var/www}]}\n"), nil,
			"containers php, worker: name the app container with --container"},
		{"unknown container", deployment(app), func(o *inject.Options) { o.Container = "web" }, "no container web (containers: php)"},
		{"label conflict", strings.Replace(deployment(app), "    spec:\n      securityContext", "    metadata: {labels: {app: web}}\n    spec:\n      securityContext", 1),
			func(o *inject.Options) { o.Selector = "upgate.dev/user={user},app=php" }, `label app is "web", but the selector`},
		{"unsatisfiable selector", strings.Replace(deployment(app), "    spec:\n      securityContext", "    metadata: {labels: {canary: \"yes\"}}\n    spec:\n      securityContext", 1),
			func(o *inject.Options) { o.Selector = "upgate.dev/user={user},!canary" }, "do not match the selector !canary,upgate.dev/user=alice, and adding labels cannot fix it"},
		{"bad selector", deployment(app), func(o *inject.Options) { o.Selector = "a in (" }, `inject: selector "a in (" for user "alice"`},
		{"relative root", deployment(app), func(o *inject.Options) { o.Root = "www" }, `inject: root "www" must be an absolute, clean path`},
		{"no image", deployment(app), func(o *inject.Options) { o.Image = "" }, "inject: a user, a root and an image (or the command of upgate in the app's image) are required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := opts()
			if tt.edit != nil {
				tt.edit(&o)
			}
			var out bytes.Buffer
			err := inject.Inject(strings.NewReader(tt.in), &out, o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Inject: %v\nwant an error containing %q", err, tt.want)
			}
			if out.Len() > 0 {
				t.Errorf("wrote %d bytes despite the error", out.Len())
			}
		})
	}
}
