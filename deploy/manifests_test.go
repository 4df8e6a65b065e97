// Package deploy_test keeps the Kubernetes manifests under kubernetes/ true
// to the gateway: every manifest file is parsed strictly into Kubernetes API
// types, and the gateway configuration embedded in the ConfigMap is parsed
// by the gateway's own config package and compared with the Deployments and
// Services around it.
package deploy_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/upgate/upgate/backend/agent/hooks"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/inject"
)

// manifestDir holds the manifests, one kustomization per directory.
const manifestDir = "kubernetes"

// The admin HTTP paths the gateway serves without a token
// (gateway/admin.NewHandler).
const (
	healthPath = "/healthz"
	readyPath  = "/readyz"
)

// newObject maps apiVersion/kind to the typed object a manifest of that kind
// decodes into. A kind not listed is an error: add it here, with checks,
// before using it in a manifest.
var newObject = map[string]func() any{
	"v1/Namespace":                                    func() any { return new(corev1.Namespace) },
	"v1/ConfigMap":                                    func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                                       func() any { return new(corev1.Secret) },
	"v1/Service":                                      func() any { return new(corev1.Service) },
	"v1/ServiceAccount":                               func() any { return new(corev1.ServiceAccount) },
	"v1/Pod":                                          func() any { return new(corev1.Pod) },
	"apps/v1/Deployment":                              func() any { return new(appsv1.Deployment) },
	"policy/v1/PodDisruptionBudget":                   func() any { return new(policyv1.PodDisruptionBudget) },
	"networking.k8s.io/v1/NetworkPolicy":              func() any { return new(networkingv1.NetworkPolicy) },
	"rbac.authorization.k8s.io/v1/Role":               func() any { return new(rbacv1.Role) },
	"rbac.authorization.k8s.io/v1/RoleBinding":        func() any { return new(rbacv1.RoleBinding) },
	"rbac.authorization.k8s.io/v1/ClusterRole":        func() any { return new(rbacv1.ClusterRole) },
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding": func() any { return new(rbacv1.ClusterRoleBinding) },
}

// clusterScoped are the kinds without a namespace.
var clusterScoped = map[string]bool{
	"v1/Namespace": true,
	"rbac.authorization.k8s.io/v1/ClusterRole":        true,
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding": true,
}

// object is one decoded manifest document.
type object struct {
	file  string // path relative to deploy/
	index int    // document index within the file, from 0
	kind  string // apiVersion/kind
	meta  *metav1.ObjectMeta
	obj   any
}

func (o *object) String() string {
	return fmt.Sprintf("%s (document %d, %s %s/%s)", o.file, o.index, path.Base(o.kind), o.meta.Namespace, o.meta.Name)
}

// manifests is every object of every manifest file.
type manifests struct {
	files   []string // manifest files, relative to deploy/
	objects []*object
}

// docSeparator splits multi-document YAML files.
var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*\r?$`)

// load parses every manifest file under manifestDir strictly: unknown
// fields, duplicate keys and unknown kinds are errors.
func load(t *testing.T) *manifests {
	t.Helper()
	m := new(manifests)
	err := filepath.WalkDir(manifestDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !isYAML(p) || isKustomization(p) {
			return nil
		}
		m.files = append(m.files, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, doc := range docSeparator.Split(string(b), -1) {
			if blankYAML(doc) {
				continue
			}
			o, err := decode(p, i, []byte(doc))
			if err != nil {
				t.Error(err)
				continue
			}
			m.objects = append(m.objects, o)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.files) == 0 {
		t.Fatalf("no manifest files under %s", manifestDir)
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

func decode(file string, index int, doc []byte) (*object, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, fmt.Errorf("%s (document %d): %v", file, index, err)
	}
	kind := tm.APIVersion + "/" + tm.Kind
	mk, ok := newObject[kind]
	if !ok {
		return nil, fmt.Errorf("%s (document %d): unknown apiVersion/kind %q", file, index, kind)
	}
	obj := mk()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s (document %d, %s): %v", file, index, kind, err)
	}
	o := &object{file: file, index: index, kind: kind, obj: obj, meta: objectMeta(obj)}
	if o.meta.Name == "" {
		return nil, fmt.Errorf("%s: no metadata.name", o)
	}
	// Every namespaced object names its namespace: the files work with
	// "kubectl apply -f" too, and references are checked per namespace.
	if !clusterScoped[kind] && o.meta.Namespace == "" {
		return nil, fmt.Errorf("%s: no metadata.namespace", o)
	}
	if clusterScoped[kind] && o.meta.Namespace != "" {
		return nil, fmt.Errorf("%s: a %s has no namespace", o, tm.Kind)
	}
	return o, nil
}

func objectMeta(obj any) *metav1.ObjectMeta {
	return obj.(interface{ GetObjectMeta() metav1.Object }).GetObjectMeta().(*metav1.ObjectMeta)
}

func isYAML(p string) bool {
	return strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")
}

func isKustomization(p string) bool {
	switch filepath.Base(p) {
	case "kustomization.yaml", "kustomization.yml", "Kustomization":
		return true
	}
	return false
}

// blankYAML reports whether doc holds only comments and blank lines.
func blankYAML(doc string) bool {
	for line := range strings.Lines(doc) {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// find returns the object of kind with that namespace and name.
func (m *manifests) find(kind, namespace, name string) *object {
	for _, o := range m.objects {
		if o.kind == kind && o.meta.Namespace == namespace && o.meta.Name == name {
			return o
		}
	}
	return nil
}

func (m *manifests) all(kind string) []*object {
	var out []*object
	for _, o := range m.objects {
		if o.kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// A pod is a pod template (or a Pod) with where it came from.
type pod struct {
	owner     *object
	namespace string
	labels    map[string]string
	spec      *corev1.PodSpec
	replicas  int32
}

func (p *pod) String() string { return p.owner.String() }

func (m *manifests) pods(t *testing.T) []*pod {
	t.Helper()
	var out []*pod
	for _, o := range m.objects {
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			sel, err := metav1.LabelSelectorAsSelector(v.Spec.Selector)
			if err != nil || sel.Empty() {
				t.Errorf("%s: spec.selector: empty or invalid (%v)", o, err)
			} else if !sel.Matches(labels.Set(v.Spec.Template.Labels)) {
				t.Errorf("%s: spec.selector %s does not match the pod template's labels %v", o, sel, v.Spec.Template.Labels)
			}
			replicas := int32(1)
			if v.Spec.Replicas != nil {
				replicas = *v.Spec.Replicas
			}
			out = append(out, &pod{owner: o, namespace: o.meta.Namespace, labels: v.Spec.Template.Labels, spec: &v.Spec.Template.Spec, replicas: replicas})
		case *corev1.Pod:
			out = append(out, &pod{owner: o, namespace: o.meta.Namespace, labels: v.Labels, spec: &v.Spec, replicas: 1})
		}
	}
	return out
}

// role returns the container's upgate subcommand ("serve", "agent") or "".
func role(c *corev1.Container) string {
	if len(c.Args) > 0 && (len(c.Command) == 0 || strings.HasSuffix(c.Command[0], "upgate")) {
		return c.Args[0]
	}
	return ""
}

// flagValue returns the value of --name in args ("--name v" or "--name=v").
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		switch {
		case a == "--"+name && i+1 < len(args):
			return args[i+1], true
		case strings.HasPrefix(a, "--"+name+"="):
			return strings.TrimPrefix(a, "--"+name+"="), true
		}
	}
	return "", false
}

// gateway is the gateway pod, its upgate serve container and the
// configuration that container reads.
type gateway struct {
	pod       *pod
	container *corev1.Container
	doc       []byte         // the config.yaml document
	cfg       gatewayConfig  // doc, as this test reads it
	parsed    *config.Config // doc, as the gateway reads it
}

// watchesPods reports whether the gateway finds agents through the
// Kubernetes API.
func (g *gateway) watchesPods() bool {
	for _, a := range g.parsed.Agents {
		if a.Kubernetes.Enabled() {
			return true
		}
	}
	return false
}

// gatewayConfig mirrors the keys of the gateway configuration these checks
// need. TestGatewayConfig checks that it reads them as the gateway does.
type gatewayConfig struct {
	Listen struct {
		FTP   string `json:"ftp"`
		SFTP  string `json:"sftp"`
		Admin string `json:"admin"`
	} `json:"listen"`
	FTP struct {
		PassivePorts string `json:"passive_ports"`
	} `json:"ftp"`
	Agents map[string]struct {
		Address    string `json:"address"`
		TokenFile  string `json:"token_file"`
		Kubernetes struct {
			Namespace  string `json:"namespace"`
			Selector   string `json:"selector"`
			Container  string `json:"container"`
			Port       int    `json:"port"`
			Kubeconfig string `json:"kubeconfig"`
		} `json:"kubernetes"`
	} `json:"agents"`
	Users []struct {
		Name   string  `json:"name"`
		Mounts []mount `json:"mounts"`
	} `json:"users"`
}

type mount struct {
	Agent string `json:"agent"`
}

// gateways finds every upgate serve container and the ConfigMap document
// its --config names.
func (m *manifests) gateways(t *testing.T) []*gateway {
	t.Helper()
	var out []*gateway
	for _, p := range m.pods(t) {
		for i := range p.spec.Containers {
			c := &p.spec.Containers[i]
			if role(c) != "serve" {
				continue
			}
			file, ok := flagValue(c.Args, "config")
			if !ok {
				t.Fatalf("%s: container %s: upgate serve without --config runs the embedded loopback default", p, c.Name)
			}
			src, err := m.resolveFile(p, c, file)
			if err != nil {
				t.Fatalf("%s: container %s: --config %s: %v", p, c.Name, file, err)
			}
			if src.kind != "ConfigMap" {
				t.Fatalf("%s: container %s: --config %s comes from %s %s, want a ConfigMap", p, c.Name, file, src.kind, src.name)
			}
			if src.subPath {
				t.Errorf("%s: container %s: --config %s is a subPath mount, which never sees ConfigMap updates: hot reload would not work", p, c.Name, file)
			}
			cm := m.find("v1/ConfigMap", p.namespace, src.name).obj.(*corev1.ConfigMap)
			g := &gateway{pod: p, container: c, doc: []byte(cm.Data[src.key])}
			if err := yaml.Unmarshal(g.doc, &g.cfg); err != nil {
				t.Fatalf("ConfigMap %s/%s key %s: %v", p.namespace, cm.Name, src.key, err)
			}
			g.parsed, err = config.Parse(g.doc)
			if err != nil {
				t.Fatalf("ConfigMap %s/%s key %s: the gateway refuses it:\n%v", p.namespace, cm.Name, src.key, err)
			}
			out = append(out, g)
		}
	}
	if len(out) == 0 {
		t.Fatal("no container runs upgate serve")
	}
	return out
}

// port returns the port of a host:port address.
func port(t *testing.T, key, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: %q: %v", key, addr, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		t.Fatalf("%s: %q: want a fixed port, got %q", key, addr, p)
	}
	return int32(n)
}

// passivePorts expands "A-B".
func passivePorts(t *testing.T, r string) []int32 {
	t.Helper()
	a, b, ok := strings.Cut(r, "-")
	lo, errA := strconv.ParseUint(a, 10, 16)
	hi, errB := strconv.ParseUint(b, 10, 16)
	if !ok || errA != nil || errB != nil || lo == 0 || lo > hi {
		t.Fatalf("ftp.passive_ports: %q: want A-B (a Service cannot expose \"any free port\")", r)
	}
	var out []int32
	for p := lo; p <= hi; p++ {
		out = append(out, int32(p))
	}
	return out
}

// fileSource is where a file in a container comes from.
type fileSource struct {
	kind, name, key string // ConfigMap or Secret, its name, the data key
	subPath         bool
}

// resolveFile follows file through c's volume mounts to the ConfigMap or
// Secret key it comes from, and checks that object and key exist.
func (m *manifests) resolveFile(p *pod, c *corev1.Container, file string) (fileSource, error) {
	var mount *corev1.VolumeMount
	for i := range c.VolumeMounts {
		vm := &c.VolumeMounts[i]
		if file == vm.MountPath || strings.HasPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			if mount == nil || len(vm.MountPath) > len(mount.MountPath) {
				mount = vm
			}
		}
	}
	if mount == nil {
		return fileSource{}, fmt.Errorf("no volume is mounted there")
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(file, mount.MountPath), "/")
	if mount.SubPath != "" {
		if rel != "" {
			return fileSource{}, fmt.Errorf("subPath mount %s is a single file", mount.MountPath)
		}
		rel = mount.SubPath
	}
	var vol *corev1.Volume
	for i := range p.spec.Volumes {
		if p.spec.Volumes[i].Name == mount.Name {
			vol = &p.spec.Volumes[i]
		}
	}
	if vol == nil {
		return fileSource{}, fmt.Errorf("volume %q is not defined", mount.Name)
	}
	var src fileSource
	var items []corev1.KeyToPath
	switch {
	case vol.Secret != nil:
		src, items = fileSource{kind: "Secret", name: vol.Secret.SecretName}, vol.Secret.Items
	case vol.ConfigMap != nil:
		src, items = fileSource{kind: "ConfigMap", name: vol.ConfigMap.Name}, vol.ConfigMap.Items
	default:
		return fileSource{}, fmt.Errorf("volume %q is neither a Secret nor a ConfigMap", vol.Name)
	}
	src.subPath = mount.SubPath != ""
	src.key = rel
	if len(items) > 0 {
		src.key = ""
		for _, it := range items {
			if it.Path == rel {
				src.key = it.Key
			}
		}
		if src.key == "" {
			return fileSource{}, fmt.Errorf("volume %q projects no item at %q", vol.Name, rel)
		}
	}
	return src, m.checkKey(p.namespace, src.kind, src.name, src.key)
}

// checkKey reports whether the ConfigMap or Secret exists in namespace and,
// if key is not empty, holds key.
func (m *manifests) checkKey(namespace, kind, name, key string) error {
	var keys []string
	switch kind {
	case "Secret":
		o := m.find("v1/Secret", namespace, name)
		if o == nil {
			return fmt.Errorf("Secret %s/%s is not in the manifests", namespace, name)
		}
		s := o.obj.(*corev1.Secret)
		for k := range s.Data {
			keys = append(keys, k)
		}
		for k := range s.StringData {
			keys = append(keys, k)
		}
	case "ConfigMap":
		o := m.find("v1/ConfigMap", namespace, name)
		if o == nil {
			return fmt.Errorf("ConfigMap %s/%s is not in the manifests", namespace, name)
		}
		cm := o.obj.(*corev1.ConfigMap)
		for k := range cm.Data {
			keys = append(keys, k)
		}
		for k := range cm.BinaryData {
			keys = append(keys, k)
		}
	default:
		return fmt.Errorf("unknown kind %s", kind)
	}
	if key != "" && !slices.Contains(keys, key) {
		slices.Sort(keys)
		return fmt.Errorf("%s %s/%s has no key %q (it has %v)", kind, namespace, name, key, keys)
	}
	return nil
}

// containerPort resolves a Service targetPort or probe port (a number or a
// container port name) against c.
func containerPort(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, cp := range c.Ports {
		if p.Type == intstr.String && cp.Name == p.StrVal || p.Type == intstr.Int && cp.ContainerPort == p.IntVal {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// selects reports whether the Service's selector picks the pod.
func selects(svc *corev1.Service, namespace string, p *pod) bool {
	return namespace == p.namespace && len(svc.Spec.Selector) > 0 &&
		labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(p.labels))
}

// (f) Every kustomization lists exactly the manifest files of its
// directory, and every manifest file is in a kustomization's directory.
func TestKustomizationsListEveryManifest(t *testing.T) {
	m := load(t)
	covered := make(map[string]bool)
	var dirs int
	err := filepath.WalkDir(manifestDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !isKustomization(p) {
			return err
		}
		dirs++
		// The fields these kustomizations use; any other is an error.
		// images is what "kustomize edit set image" writes.
		var k struct {
			APIVersion string   `json:"apiVersion"`
			Kind       string   `json:"kind"`
			Resources  []string `json:"resources"`
			Images     []struct {
				Name    string `json:"name"`
				NewName string `json:"newName,omitempty"`
				NewTag  string `json:"newTag,omitempty"`
				Digest  string `json:"digest,omitempty"`
			} `json:"images,omitempty"`
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := yaml.UnmarshalStrict(b, &k); err != nil {
			t.Errorf("%s: %v", p, err)
			return nil
		}
		if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
			t.Errorf("%s: apiVersion/kind %s/%s, want kustomize.config.k8s.io/v1beta1/Kustomization", p, k.APIVersion, k.Kind)
		}
		dir := filepath.Dir(p)
		var want []string
		for _, f := range m.files {
			if filepath.Dir(f) == dir {
				want = append(want, filepath.Base(f))
			}
		}
		got := slices.Clone(k.Resources)
		for i, r := range got {
			if r != filepath.Base(r) || !isYAML(r) {
				t.Errorf("%s: resources[%d] %q: want a manifest file of this directory (other directories are kustomizations of their own)", p, i, r)
			}
			if slices.Contains(got[:i], r) {
				t.Errorf("%s: resources[%d] %q is listed twice", p, i, r)
			}
			covered[filepath.Join(dir, r)] = true
		}
		for _, f := range want {
			if !slices.Contains(got, f) {
				t.Errorf("%s: resources does not list %s", p, f)
			}
		}
		for _, r := range got {
			if !slices.Contains(want, r) {
				t.Errorf("%s: resources lists %s, which is not a manifest file here", p, r)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if dirs == 0 {
		t.Fatalf("no kustomization.yaml under %s", manifestDir)
	}
	for _, f := range m.files {
		if !covered[f] {
			t.Errorf("%s is in no kustomization", f)
		}
	}
}

// The ConfigMap's configuration is one the gateway accepts, and fits a
// cluster: no loopback listeners, no demo user, files from mounted Secrets.
func TestGatewayConfig(t *testing.T) {
	m := load(t)
	for _, g := range m.gateways(t) {
		c, p := g.parsed, g.pod
		// The test's own reading agrees with the gateway's.
		if g.cfg.Listen.FTP != c.Listen.FTP || g.cfg.Listen.SFTP != c.Listen.SFTP || g.cfg.Listen.Admin != c.Listen.Admin || g.cfg.FTP.PassivePorts != c.FTP.PassivePorts {
			t.Fatalf("%s: this test reads listen/ftp.passive_ports as %+v / %q, the gateway as %+v / %q", p, g.cfg.Listen, g.cfg.FTP.PassivePorts, c.Listen, c.FTP.PassivePorts)
		}
		for name, a := range g.cfg.Agents {
			pa := c.Agents[name]
			k := config.AgentKubernetes(a.Kubernetes)
			if pa.Address != a.Address || pa.TokenFile != a.TokenFile || pa.Kubernetes != k {
				t.Fatalf("%s: this test reads agents.%s as %q/%q/%+v, the gateway as %q/%q/%+v", p, name, a.Address, a.TokenFile, k, pa.Address, pa.TokenFile, pa.Kubernetes)
			}
		}
		for key, addr := range map[string]string{"listen.ftp": c.Listen.FTP, "listen.sftp": c.Listen.SFTP, "listen.admin": c.Listen.Admin} {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				t.Errorf("%s: %s %q: %v", p, key, addr, err)
				continue
			}
			if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
				t.Errorf("%s: %s %q is loopback: unreachable from Services and probes", p, key, addr)
			}
		}
		if _, ok := c.User("demo"); ok {
			t.Errorf("%s: the demo user is configured (refused on non-loopback listeners)", p)
		}
		if c.Admin.TokenFile == "" {
			t.Errorf("%s: admin.token_file is empty: /metrics and /api/ would be open on the pod network", p)
		}
		for _, a := range c.Agents {
			if a.Embedded {
				t.Errorf("%s: an embedded agent writes into the gateway pod; agents belong in the dev pods", p)
			}
		}
		// Every file the configuration names comes from a mounted
		// Secret or ConfigMap key that exists.
		files := map[string]string{
			"ftp.tls.cert":     c.FTP.TLS.Cert,
			"ftp.tls.key":      c.FTP.TLS.Key,
			"admin.token_file": c.Admin.TokenFile,
		}
		for i, k := range c.SFTP.HostKeys {
			files[fmt.Sprintf("sftp.host_keys[%d]", i)] = k
		}
		for name, a := range c.Agents {
			files["agents."+name+".token_file"] = a.TokenFile
			files["agents."+name+".tls.ca"] = a.TLS.CA
			files["agents."+name+".tls.cert"] = a.TLS.Cert
			files["agents."+name+".tls.key"] = a.TLS.Key
		}
		for key, f := range files {
			if f == "" {
				continue
			}
			if _, err := m.resolveFile(p, g.container, f); err != nil {
				t.Errorf("%s: %s %s: %v", p, key, f, err)
			}
		}
	}
}

// (a) The container ports and Service ports are the ports the gateway's
// configuration listens on.
func TestPortsMatchConfig(t *testing.T) {
	m := load(t)
	services := m.all("v1/Service")
	for _, g := range m.gateways(t) {
		p, c := g.pod, g.container
		ftp := port(t, "listen.ftp", g.cfg.Listen.FTP)
		sftp := port(t, "listen.sftp", g.cfg.Listen.SFTP)
		admin := port(t, "listen.admin", g.cfg.Listen.Admin)
		passive := passivePorts(t, g.cfg.FTP.PassivePorts)

		want := append([]int32{ftp, sftp, admin}, passive...)
		var got []int32
		for _, cp := range c.Ports {
			if cp.HostPort != 0 {
				t.Errorf("%s: containerPort %d has hostPort %d", p, cp.ContainerPort, cp.HostPort)
			}
			if cp.Protocol != "" && cp.Protocol != corev1.ProtocolTCP {
				t.Errorf("%s: containerPort %d: protocol %s, want TCP", p, cp.ContainerPort, cp.Protocol)
			}
			got = append(got, cp.ContainerPort)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: container %s ports %v, want the configuration's %v (listen.* and ftp.passive_ports)", p, c.Name, got, want)
		}

		// Each Service that selects the gateway targets only configured
		// ports; together they expose FTP, SFTP and every passive port.
		exposed := make(map[int32][]corev1.ServicePort) // target -> Service ports
		var lb bool
		for _, so := range services {
			svc := so.obj.(*corev1.Service)
			if !selects(svc, so.meta.Namespace, p) {
				continue
			}
			for _, sp := range svc.Spec.Ports {
				target := sp.TargetPort
				if target.Type == intstr.Int && target.IntVal == 0 {
					target = intstr.FromInt32(sp.Port)
				}
				tp, ok := containerPort(c, target)
				if !ok {
					t.Errorf("%s: port %s targets %s, which is no container port of %s", so, sp.Name, target.String(), p)
					continue
				}
				if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
					t.Errorf("%s: port %s: protocol %s, want TCP", so, sp.Name, sp.Protocol)
				}
				if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
					lb = true
					if tp == admin {
						t.Errorf("%s: the load balancer exposes the admin port %d", so, admin)
					}
					exposed[tp] = append(exposed[tp], sp)
				} else if tp == admin {
					exposed[tp] = append(exposed[tp], sp)
				}
			}
		}
		if !lb {
			t.Errorf("%s: no Service of type LoadBalancer selects the gateway", p)
		}
		wantPort := map[int32]int32{ftp: 21, sftp: 22}
		for tp, sp := range wantPort {
			if !slices.ContainsFunc(exposed[tp], func(s corev1.ServicePort) bool { return s.Port == sp }) {
				t.Errorf("no load-balancer Service port %d targets the gateway's port %d", sp, tp)
			}
		}
		for _, pp := range passive {
			// A PASV reply names the port the client dials: the Service
			// must keep the number.
			if !slices.ContainsFunc(exposed[pp], func(s corev1.ServicePort) bool { return s.Port == pp }) {
				t.Errorf("passive port %d (ftp.passive_ports %s) is not exposed as Service port %d by a load-balancer Service", pp, g.cfg.FTP.PassivePorts, pp)
			}
		}
		if len(exposed[admin]) == 0 {
			t.Errorf("no ClusterIP Service exposes the admin port %d for scraping", admin)
		}
	}
}

// (b) The gateway's probes ask the admin server's real paths on the
// configured admin port; every other probe targets a declared port.
func TestProbes(t *testing.T) {
	m := load(t)
	gws := m.gateways(t)
	for _, p := range m.pods(t) {
		for i := range p.spec.Containers {
			c := &p.spec.Containers[i]
			var gw *gateway
			for _, g := range gws {
				if g.container == c {
					gw = g
				}
			}
			if c.ReadinessProbe == nil || c.LivenessProbe == nil {
				t.Errorf("%s: container %s: needs a readinessProbe and a livenessProbe", p, c.Name)
				continue
			}
			probes := map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe, "startupProbe": c.StartupProbe}
			for name, pr := range probes {
				if pr == nil {
					continue
				}
				switch {
				case pr.HTTPGet != nil:
					if gw == nil {
						t.Errorf("%s: container %s: %s is httpGet, but only the gateway serves HTTP", p, c.Name, name)
						continue
					}
					admin := port(t, "listen.admin", gw.cfg.Listen.Admin)
					if got, ok := containerPort(c, pr.HTTPGet.Port); !ok || got != admin {
						t.Errorf("%s: container %s: %s port %s is not the admin port %d (listen.admin)", p, c.Name, name, pr.HTTPGet.Port.String(), admin)
					}
					if s := pr.HTTPGet.Scheme; s != "" && s != corev1.URISchemeHTTP {
						t.Errorf("%s: container %s: %s scheme %s: the admin server speaks HTTP", p, c.Name, name, s)
					}
				case pr.TCPSocket != nil:
					if _, ok := containerPort(c, pr.TCPSocket.Port); !ok {
						t.Errorf("%s: container %s: %s port %s is no port of the container", p, c.Name, name, pr.TCPSocket.Port.String())
					}
				default:
					t.Errorf("%s: container %s: %s is neither httpGet nor tcpSocket", p, c.Name, name)
				}
			}
			if gw == nil {
				continue
			}
			// Readiness is /readyz (503 while starting or draining);
			// liveness is /healthz: a draining or agent-less gateway must
			// not be restarted.
			for name, want := range map[string]string{"readinessProbe": readyPath, "livenessProbe": healthPath} {
				pr := probes[name]
				if pr.HTTPGet == nil || pr.HTTPGet.Path != want {
					t.Errorf("%s: container %s: %s must be httpGet %s on the admin port", p, c.Name, name, want)
				}
			}
		}
	}
}

// (c) Every Secret and ConfigMap a pod uses exists in its namespace, with
// the keys it asks for.
func TestReferencesExist(t *testing.T) {
	m := load(t)
	for _, p := range m.pods(t) {
		ns := p.namespace
		check := func(where, kind, name, key string) {
			if name == "" {
				t.Errorf("%s: %s: no %s name", p, where, kind)
				return
			}
			if err := m.checkKey(ns, kind, name, key); err != nil {
				t.Errorf("%s: %s: %v", p, where, err)
			}
		}
		volumes := make(map[string]bool)
		for _, v := range p.spec.Volumes {
			volumes[v.Name] = true
			where := "volume " + v.Name
			switch {
			case v.Secret != nil:
				check(where, "Secret", v.Secret.SecretName, "")
				for _, it := range v.Secret.Items {
					check(where, "Secret", v.Secret.SecretName, it.Key)
				}
			case v.ConfigMap != nil:
				check(where, "ConfigMap", v.ConfigMap.Name, "")
				for _, it := range v.ConfigMap.Items {
					check(where, "ConfigMap", v.ConfigMap.Name, it.Key)
				}
			case v.Projected != nil:
				for _, s := range v.Projected.Sources {
					if s.Secret != nil {
						check(where, "Secret", s.Secret.Name, "")
						for _, it := range s.Secret.Items {
							check(where, "Secret", s.Secret.Name, it.Key)
						}
					}
					if s.ConfigMap != nil {
						check(where, "ConfigMap", s.ConfigMap.Name, "")
						for _, it := range s.ConfigMap.Items {
							check(where, "ConfigMap", s.ConfigMap.Name, it.Key)
						}
					}
				}
			}
		}
		for _, ips := range p.spec.ImagePullSecrets {
			check("imagePullSecrets", "Secret", ips.Name, "")
		}
		for _, c := range slices.Concat(p.spec.InitContainers, p.spec.Containers) {
			for _, ef := range c.EnvFrom {
				if ef.SecretRef != nil {
					check("container "+c.Name+" envFrom", "Secret", ef.SecretRef.Name, "")
				}
				if ef.ConfigMapRef != nil {
					check("container "+c.Name+" envFrom", "ConfigMap", ef.ConfigMapRef.Name, "")
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if r := e.ValueFrom.SecretKeyRef; r != nil {
					check("container "+c.Name+" env "+e.Name, "Secret", r.Name, r.Key)
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
					check("container "+c.Name+" env "+e.Name, "ConfigMap", r.Name, r.Key)
				}
			}
			for _, vm := range c.VolumeMounts {
				if !volumes[vm.Name] {
					t.Errorf("%s: container %s mounts volume %q, which is not defined", p, c.Name, vm.Name)
				}
			}
			// The agent's token file is a mounted Secret key.
			if role(&c) == "agent" {
				f, ok := flagValue(c.Args, "token-file")
				if !ok {
					t.Errorf("%s: container %s: agent without --token-file", p, c.Name)
					continue
				}
				src, err := m.resolveFile(p, &c, f)
				if err != nil {
					t.Errorf("%s: container %s: --token-file %s: %v", p, c.Name, f, err)
				} else if src.kind != "Secret" {
					t.Errorf("%s: container %s: --token-file %s comes from a %s, want a Secret", p, c.Name, f, src.kind)
				}
			}
		}
	}
}

// (d) Every container runs as a non-root user, with a read-only root
// filesystem, without privilege escalation or capabilities, under the
// runtime's seccomp profile; and has memory and CPU requests and limits.
func TestSecurityContexts(t *testing.T) {
	m := load(t)
	apiClient := make(map[*object]bool)
	for _, g := range m.gateways(t) {
		apiClient[g.pod.owner] = g.watchesPods()
	}
	for _, p := range m.pods(t) {
		psc := p.spec.SecurityContext
		if psc == nil {
			psc = new(corev1.PodSecurityContext)
		}
		// The pod's own securityContext says non-root too, so that a
		// container added later without one still runs as non-root.
		if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			t.Errorf("%s: pod securityContext.runAsNonRoot is not true", p)
		}
		if psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Errorf("%s: pod securityContext.runAsUser is unset or 0", p)
		}
		if p.spec.HostNetwork || p.spec.HostPID || p.spec.HostIPC {
			t.Errorf("%s: uses a host namespace", p)
		}
		if a := p.spec.AutomountServiceAccountToken; (a == nil || *a) && !apiClient[p.owner] {
			t.Errorf("%s: automountServiceAccountToken must be false: only a gateway with agents.NAME.kubernetes talks to the Kubernetes API", p)
		}
		for _, c := range slices.Concat(p.spec.InitContainers, p.spec.Containers) {
			where := fmt.Sprintf("%s: container %s", p, c.Name)
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s: no securityContext", where)
				continue
			}
			nonRoot, uid, seccomp := psc.RunAsNonRoot, psc.RunAsUser, psc.SeccompProfile
			if sc.RunAsNonRoot != nil {
				nonRoot = sc.RunAsNonRoot
			}
			if sc.RunAsUser != nil {
				uid = sc.RunAsUser
			}
			if sc.SeccompProfile != nil {
				seccomp = sc.SeccompProfile
			}
			if nonRoot == nil || !*nonRoot {
				t.Errorf("%s: runAsNonRoot is not true", where)
			}
			if uid == nil || *uid == 0 {
				t.Errorf("%s: runAsUser is unset or 0: want a numeric non-root uid", where)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: readOnlyRootFilesystem is not true", where)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allowPrivilegeEscalation is not false", where)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s: privileged", where)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s: capabilities must drop ALL and add none", where)
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost {
				t.Errorf("%s: seccompProfile must be RuntimeDefault (or Localhost)", where)
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					t.Errorf("%s: no %s request", where, r)
				}
			}
			if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
				t.Errorf("%s: no memory limit", where)
			}
			// GOMEMLIMIT, if set, stays under the memory limit.
			for _, e := range c.Env {
				if e.Name != "GOMEMLIMIT" {
					continue
				}
				soft, err := resource.ParseQuantity(strings.TrimSuffix(strings.ReplaceAll(e.Value, "iB", "i"), "B"))
				if err != nil {
					t.Errorf("%s: GOMEMLIMIT %q: %v", where, e.Value, err)
					continue
				}
				if lim := c.Resources.Limits[corev1.ResourceMemory]; soft.Cmp(lim) >= 0 {
					t.Errorf("%s: GOMEMLIMIT %s is not below the memory limit %s", where, e.Value, lim.String())
				}
			}
		}
	}
}

// (e) The gateway reaches alice's agent: through the Kubernetes API (the
// pod template in the agent's namespace that its selector picks for alice)
// or through an address template (the headless Service it names). Either
// way the agent sidecar listens on that port, shares the code volume with
// the app, runs as its uid, uses the gateway's image and token, and only
// the gateway may reach it.
func TestAgentTargets(t *testing.T) {
	const user = "alice"
	m := load(t)
	gws := m.gateways(t)
	pods := m.pods(t)
	var checked int
	for _, g := range gws {
		for name, a := range g.parsed.Agents {
			if a.Embedded || !a.Kubernetes.Enabled() && !strings.Contains(a.Address, "{user}") {
				continue
			}
			var usedByUser bool
			for _, u := range g.cfg.Users {
				if u.Name == user && slices.ContainsFunc(u.Mounts, func(mt mount) bool { return mt.Agent == name }) {
					usedByUser = true
				}
			}
			if !usedByUser {
				t.Errorf("agents.%s: user %s has no mount on it: the example dev pod would be unused", name, user)
			}
			checked++
			var (
				p         *pod
				agent     *corev1.Container
				agentPort int32
			)
			if a.Kubernetes.Enabled() {
				p, agent, agentPort = kubernetesTarget(t, name, a.Kubernetes, user, pods)
			} else {
				p, agent, agentPort = addressTarget(t, m, name, a.Address, user, pods)
			}
			checkAgentPod(t, m, g, name, a, p, agent, agentPort)
		}
	}
	if checked == 0 {
		t.Fatal("no per-user agent (agents.NAME.kubernetes or an address with \"{user}\") to check")
	}
}

// kubernetesTarget finds the pod template that agents.NAME.kubernetes
// picks for user: in its namespace, matching its selector, with the agent
// container; one replica, so that one pod takes the uploads.
func kubernetesTarget(t *testing.T, name string, k config.AgentKubernetes, user string, pods []*pod) (*pod, *corev1.Container, int32) {
	t.Helper()
	ns := strings.ReplaceAll(k.Namespace, "{user}", user)
	sel, err := labels.Parse(strings.ReplaceAll(k.Selector, "{user}", user))
	if err != nil {
		t.Fatalf("agents.%s.kubernetes.selector %q for %s: %v", name, k.Selector, user, err)
	}
	var matched []*pod
	for _, p := range pods {
		if p.namespace == ns && sel.Matches(labels.Set(p.labels)) {
			matched = append(matched, p)
		}
	}
	if len(matched) != 1 || matched[0].replicas != 1 {
		t.Fatalf("agents.%s.kubernetes: %d pod templates in %s match %s; want exactly one, with one replica (one agent per user)", name, len(matched), ns, sel)
	}
	p := matched[0]
	container := k.Container
	if container == "" {
		container = "upgate-agent"
	}
	var agent *corev1.Container
	for i := range p.spec.Containers {
		if p.spec.Containers[i].Name == container {
			agent = &p.spec.Containers[i]
		}
	}
	if agent == nil || role(agent) != "agent" {
		t.Fatalf("%s: no container %s running upgate agent (agents.%s.kubernetes.container)", p, container, name)
	}
	if _, ok := containerPort(agent, intstr.FromInt(k.Port)); !ok {
		t.Errorf("%s: container %s declares no port %d (agents.%s.kubernetes.port)", p, container, k.Port, name)
	}
	if agent.ReadinessProbe == nil {
		t.Errorf("%s: container %s has no readinessProbe: the gateway sends uploads to pods whose agent is ready", p, container)
	}
	return p, agent, int32(k.Port)
}

// addressTarget finds the pod that an address template names for user:
// the headless Service <service>.<namespace>.svc... and the one pod
// template it selects.
func addressTarget(t *testing.T, m *manifests, name, address, user string, pods []*pod) (*pod, *corev1.Container, int32) {
	t.Helper()
	addr := strings.ReplaceAll(address, "{user}", user)
	target := strings.TrimPrefix(strings.TrimPrefix(addr, "dns:///"), "dns:")
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		t.Fatalf("agents.%s.address %q for %s: %v", name, address, user, err)
	}
	agentPort, _ := strconv.Atoi(portStr)
	// <service>.<namespace>[.svc[.cluster.local]]
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	if len(parts) < 2 || len(parts) > 5 || len(parts) > 2 && parts[2] != "svc" || len(parts) == 5 && parts[3]+"."+parts[4] != "cluster.local" {
		t.Fatalf("agents.%s.address %q: host %q is not <service>.<namespace>.svc.cluster.local", name, address, host)
	}
	svcName, ns := parts[0], parts[1]
	so := m.find("v1/Service", ns, svcName)
	if so == nil {
		t.Fatalf("agents.%s.address %q: for user %s it names Service %s/%s, which is not in the manifests", name, address, user, ns, svcName)
	}
	svc := so.obj.(*corev1.Service)
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("%s: clusterIP %q, want None (headless: the name resolves to the pod)", so, svc.Spec.ClusterIP)
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == int32(agentPort) {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		t.Fatalf("%s: no port %d (from agents.%s.address %q)", so, agentPort, name, address)
	}
	var matched []*pod
	for _, p := range pods {
		if selects(svc, ns, p) {
			matched = append(matched, p)
		}
	}
	if len(matched) != 1 || matched[0].replicas != 1 {
		t.Fatalf("%s: selects %d pod templates; want exactly one, with one replica (one agent per user)", so, len(matched))
	}
	p := matched[0]
	var agent *corev1.Container
	for i := range p.spec.Containers {
		if role(&p.spec.Containers[i]) == "agent" {
			agent = &p.spec.Containers[i]
		}
	}
	if agent == nil {
		t.Fatalf("%s: no container runs upgate agent", p)
	}
	tgt := sp.TargetPort
	if tgt.Type == intstr.Int && tgt.IntVal == 0 {
		tgt = intstr.FromInt32(sp.Port)
	}
	tp, ok := containerPort(agent, tgt)
	if !ok {
		t.Errorf("%s: targetPort %s is no port of the agent container", so, tgt.String())
	}
	return p, agent, tp
}

// checkAgentPod checks the agent sidecar that the gateway reaches on
// agentPort: it listens there, serves a volume it shares with the app as
// the app's uid, runs the gateway's image with the gateway's token, and
// only the gateway may reach it.
func checkAgentPod(t *testing.T, m *manifests, g *gateway, name string, a config.Agent, p *pod, agent *corev1.Container, agentPort int32) {
	t.Helper()
	// The agent runs the gateway's image, or the app's own image with
	// the upgate binary in it (its hooks need the app's tools): the image
	// of another container of the pod.
	if agent.Image != g.container.Image && !slices.ContainsFunc(p.spec.Containers, func(c corev1.Container) bool {
		return c.Name != agent.Name && c.Image == agent.Image
	}) {
		t.Errorf("%s: agent image %s is neither the gateway's (%s) nor the app's (another container's)", p, agent.Image, g.container.Image)
	}
	listen, _ := flagValue(agent.Args, "listen")
	if lp := port(t, "agent --listen", listen); lp != agentPort {
		t.Errorf("%s: the gateway dials port %d, the agent listens on %q", p, agentPort, listen)
	}

	// The code volume: the agent's --root is a volume that another
	// container mounts at the same path, and the agent writes as that
	// container's uid.
	root, _ := flagValue(agent.Args, "root")
	var rootVol *corev1.VolumeMount
	for i, vm := range agent.VolumeMounts {
		if (root == vm.MountPath || strings.HasPrefix(root, strings.TrimSuffix(vm.MountPath, "/")+"/")) && !vm.ReadOnly {
			rootVol = &agent.VolumeMounts[i]
		}
	}
	if rootVol == nil {
		t.Fatalf("%s: agent --root %q is on no writable volume mount", p, root)
	}
	uid := func(c *corev1.Container) int64 {
		if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
			return *c.SecurityContext.RunAsUser
		}
		if p.spec.SecurityContext != nil && p.spec.SecurityContext.RunAsUser != nil {
			return *p.spec.SecurityContext.RunAsUser
		}
		return -1
	}
	var app int
	for i := range p.spec.Containers {
		c := &p.spec.Containers[i]
		if c == agent {
			continue
		}
		if slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
			return vm.Name == rootVol.Name && vm.MountPath == rootVol.MountPath && vm.SubPath == rootVol.SubPath
		}) {
			app++
			if uid(c) != uid(agent) {
				t.Errorf("%s: agent runs as uid %d, container %s (sharing %s) as %d: uploaded files would not belong to the app", p, uid(agent), c.Name, root, uid(c))
			}
		}
	}
	if app == 0 {
		t.Errorf("%s: no other container mounts the agent's root %s", p, root)
	}

	// The token: the same Secret name, key and value as the gateway's
	// agents.<name>.token_file.
	gsrc, err := m.resolveFile(g.pod, g.container, a.TokenFile)
	if err != nil {
		t.Fatalf("agents.%s.token_file: %v", name, err)
	}
	tokenFile, _ := flagValue(agent.Args, "token-file")
	asrc, err := m.resolveFile(p, agent, tokenFile)
	if err != nil {
		t.Fatalf("%s: --token-file: %v", p, err)
	}
	if gsrc.kind != asrc.kind || gsrc.name != asrc.name {
		t.Errorf("gateway token from %s %s, agent token from %s %s: use one Secret name in both namespaces", gsrc.kind, gsrc.name, asrc.kind, asrc.name)
	} else {
		gs := m.find("v1/Secret", g.pod.namespace, gsrc.name).obj.(*corev1.Secret)
		as := m.find("v1/Secret", p.namespace, asrc.name).obj.(*corev1.Secret)
		if secretValue(gs, gsrc.key) != secretValue(as, asrc.key) {
			t.Errorf("Secret %s differs between namespaces %s and %s: gateway and agent must share the token", gsrc.name, g.pod.namespace, p.namespace)
		}
	}

	checkNetworkPolicy(t, m, g, p, agentPort)
}

// (g) An agent's hook file (--hooks) is a ConfigMap key that the agent
// accepts, mounted outside its --root (where uploads could replace it).
func TestAgentHooks(t *testing.T) {
	m := load(t)
	var checked int
	for _, p := range m.pods(t) {
		for i := range p.spec.Containers {
			c := &p.spec.Containers[i]
			file, ok := flagValue(c.Args, "hooks")
			if role(c) != "agent" || !ok {
				continue
			}
			checked++
			where := fmt.Sprintf("%s: container %s: --hooks %s", p, c.Name, file)
			root, _ := flagValue(c.Args, "root")
			if root != "" && (file == root || strings.HasPrefix(file, strings.TrimSuffix(root, "/")+"/")) {
				t.Errorf("%s: inside --root %s, where an upload could replace it", where, root)
			}
			src, err := m.resolveFile(p, c, file)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			if src.kind != "ConfigMap" {
				t.Errorf("%s: comes from a %s, want a ConfigMap", where, src.kind)
				continue
			}
			cm := m.find("v1/ConfigMap", p.namespace, src.name).obj.(*corev1.ConfigMap)
			hs, err := hooks.Parse([]byte(cm.Data[src.key]))
			if err != nil {
				t.Errorf("%s: the agent refuses it:\n%v", where, err)
				continue
			}
			if len(hs) == 0 {
				t.Errorf("%s: no hooks", where)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no agent container runs with --hooks: the example hooks are unused")
	}
}

func secretValue(s *corev1.Secret, key string) string {
	if v, ok := s.StringData[key]; ok {
		return v
	}
	return string(s.Data[key])
}

// checkNetworkPolicy: some NetworkPolicy isolates the agent pod, and every
// rule that lets traffic reach the agent port admits only gateway pods.
func checkNetworkPolicy(t *testing.T, m *manifests, g *gateway, agentPod *pod, agentPort int32) {
	t.Helper()
	gwNS := m.find("v1/Namespace", "", g.pod.namespace)
	if gwNS == nil {
		t.Errorf("Namespace %s of the gateway is not in the manifests", g.pod.namespace)
		return
	}
	nsLabels := labels.Set{"kubernetes.io/metadata.name": g.pod.namespace}
	for k, v := range gwNS.meta.Labels {
		nsLabels[k] = v
	}
	var isolating int
	for _, o := range m.all("networking.k8s.io/v1/NetworkPolicy") {
		np := o.obj.(*networkingv1.NetworkPolicy)
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Errorf("%s: podSelector: %v", o, err)
			continue
		}
		if o.meta.Namespace != agentPod.namespace || !sel.Matches(labels.Set(agentPod.labels)) {
			continue
		}
		if len(np.Spec.PolicyTypes) > 0 && !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			continue
		}
		isolating++
		var allows bool
		for i, rule := range np.Spec.Ingress {
			if !rulePort(rule.Ports, agentPort) {
				continue
			}
			if len(rule.From) == 0 {
				t.Errorf("%s: ingress[%d] lets anyone reach the agent port %d", o, i, agentPort)
				continue
			}
			for j, peer := range rule.From {
				ok := peer.IPBlock == nil && peer.NamespaceSelector != nil && peer.PodSelector != nil
				if ok {
					nss, err1 := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
					ps, err2 := metav1.LabelSelectorAsSelector(peer.PodSelector)
					ok = err1 == nil && err2 == nil && !nss.Empty() && !ps.Empty() &&
						nss.Matches(nsLabels) && ps.Matches(labels.Set(g.pod.labels))
				}
				if !ok {
					t.Errorf("%s: ingress[%d].from[%d] to the agent port %d must select exactly the gateway pods (namespace %s and their labels)", o, i, j, agentPort, g.pod.namespace)
				} else {
					allows = true
				}
			}
		}
		if !allows {
			t.Errorf("%s: does not let the gateway reach the agent port %d", o, agentPort)
		}
	}
	if isolating == 0 {
		t.Errorf("%s: no NetworkPolicy restricts ingress to the agent port %d", agentPod, agentPort)
	}
}

// rulePort reports whether a NetworkPolicy rule's ports cover TCP port p.
func rulePort(ports []networkingv1.NetworkPolicyPort, p int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, np := range ports {
		if np.Protocol != nil && *np.Protocol != corev1.ProtocolTCP {
			continue
		}
		if np.Port == nil {
			return true
		}
		if np.Port.Type == intstr.String {
			return true // a named port may be the agent's: treat as covering it
		}
		end := np.Port.IntVal
		if np.EndPort != nil {
			end = *np.EndPort
		}
		if np.Port.IntVal <= p && p <= end {
			return true
		}
	}
	return false
}

// The gateway runs replicated with a PodDisruptionBudget, and mounts its
// Secrets readable by its group only.
func TestGatewayAvailability(t *testing.T) {
	m := load(t)
	for _, g := range m.gateways(t) {
		p := g.pod
		if p.replicas < 2 {
			t.Errorf("%s: %d replicas, want at least 2", p, p.replicas)
		}
		var covered bool
		for _, o := range m.all("policy/v1/PodDisruptionBudget") {
			pdb := o.obj.(*policyv1.PodDisruptionBudget)
			sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			if err != nil || o.meta.Namespace != p.namespace || !sel.Matches(labels.Set(p.labels)) {
				continue
			}
			covered = true
			if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 || pdb.Spec.MinAvailable.IntValue() >= int(p.replicas) {
				t.Errorf("%s: minAvailable must be at least 1 and below the %d replicas", o, p.replicas)
			}
		}
		if !covered {
			t.Errorf("%s: no PodDisruptionBudget selects the gateway", p)
		}
		for _, v := range p.spec.Volumes {
			if v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0) {
				t.Errorf("%s: Secret volume %s is readable by others: set defaultMode 0440", p, v.Name)
			}
		}
	}
	// Manifests say what they are: every Secret is marked as an example.
	for _, o := range m.all("v1/Secret") {
		if o.meta.Annotations["upgate.example/placeholder"] != "true" {
			t.Errorf("%s: example Secrets carry the annotation upgate.example/placeholder: \"true\"", o)
		}
		s := o.obj.(*corev1.Secret)
		for k, v := range s.StringData {
			if v != "" && !strings.Contains(v, "REPLACE ME") {
				t.Errorf("%s: key %s holds something other than a placeholder: no real secret belongs in the repository", o, k)
			}
		}
		if len(s.Data) > 0 {
			t.Errorf("%s: data holds base64 values: keep example Secrets as visible placeholders in stringData", o)
		}
	}
}

// (h) Least privilege: a gateway that finds agents through the Kubernetes
// API runs as a ServiceAccount of its own, which may get, list and watch
// pods in the namespace of each agent entry, through RoleBindings there,
// and nothing else: no other resource or verb, no cluster-wide binding.
// Every other pod gets no API token at all.
func TestLeastPrivilege(t *testing.T) {
	const user = "alice"
	m := load(t)
	allowed := []string{"get", "list", "watch"}
	for _, g := range m.gateways(t) {
		if !g.watchesPods() {
			continue
		}
		p := g.pod
		sa := p.spec.ServiceAccountName
		if sa == "" || sa == "default" {
			t.Fatalf("%s: serviceAccountName %q: give the gateway a ServiceAccount of its own", p, sa)
		}
		so := m.find("v1/ServiceAccount", p.namespace, sa)
		if so == nil {
			t.Fatalf("%s: ServiceAccount %s/%s is not in the manifests", p, p.namespace, sa)
		}
		if a := so.obj.(*corev1.ServiceAccount).AutomountServiceAccountToken; a == nil || *a {
			t.Errorf("%s: automountServiceAccountToken must be false: only the gateway's pods ask for its token", so)
		}
		if a := p.spec.AutomountServiceAccountToken; a == nil || !*a {
			t.Errorf("%s: automountServiceAccountToken must be true: the gateway reads pods with the token", p)
		}
		isGateway := func(subjects []rbacv1.Subject, bindingNS string) bool {
			for _, s := range subjects {
				ns := s.Namespace
				if ns == "" {
					ns = bindingNS
				}
				if s.Kind == rbacv1.ServiceAccountKind && s.Name == sa && ns == p.namespace ||
					s.Kind == rbacv1.GroupKind && (s.Name == "system:serviceaccounts" || s.Name == "system:serviceaccounts:"+p.namespace || s.Name == "system:authenticated") {
					return true
				}
			}
			return false
		}
		// rulesOf returns the rules of the role a binding names.
		rulesOf := func(ref rbacv1.RoleRef, ns string) ([]rbacv1.PolicyRule, error) {
			switch ref.Kind {
			case "Role":
				if o := m.find("rbac.authorization.k8s.io/v1/Role", ns, ref.Name); o != nil {
					return o.obj.(*rbacv1.Role).Rules, nil
				}
			case "ClusterRole":
				if o := m.find("rbac.authorization.k8s.io/v1/ClusterRole", "", ref.Name); o != nil {
					return o.obj.(*rbacv1.ClusterRole).Rules, nil
				}
			}
			return nil, fmt.Errorf("%s %s is not in the manifests", ref.Kind, ref.Name)
		}
		for _, o := range m.all("rbac.authorization.k8s.io/v1/ClusterRoleBinding") {
			if isGateway(o.obj.(*rbacv1.ClusterRoleBinding).Subjects, "") {
				t.Errorf("%s: binds the gateway cluster-wide: grant it per namespace with RoleBindings", o)
			}
		}
		// What the gateway may do, namespace by namespace.
		granted := make(map[string]map[string]bool) // namespace -> verb on pods
		for _, o := range m.all("rbac.authorization.k8s.io/v1/RoleBinding") {
			rb := o.obj.(*rbacv1.RoleBinding)
			if !isGateway(rb.Subjects, o.meta.Namespace) {
				continue
			}
			rules, err := rulesOf(rb.RoleRef, o.meta.Namespace)
			if err != nil {
				t.Errorf("%s: %v", o, err)
				continue
			}
			for i, r := range rules {
				if !slices.Equal(r.APIGroups, []string{""}) || !slices.Equal(r.Resources, []string{"pods"}) || len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
					t.Errorf("%s: %s %s rules[%d] grants %v on %v (groups %q): the gateway needs pods in the core group only", o, rb.RoleRef.Kind, rb.RoleRef.Name, i, r.Verbs, r.Resources, r.APIGroups)
				}
				for _, v := range r.Verbs {
					if !slices.Contains(allowed, v) {
						t.Errorf("%s: %s %s rules[%d] grants %q: the gateway only reads (%v)", o, rb.RoleRef.Kind, rb.RoleRef.Name, i, v, allowed)
					}
					if granted[o.meta.Namespace] == nil {
						granted[o.meta.Namespace] = make(map[string]bool)
					}
					granted[o.meta.Namespace][v] = true
				}
			}
		}
		for name, a := range g.parsed.Agents {
			if !a.Kubernetes.Enabled() {
				continue
			}
			ns := strings.ReplaceAll(a.Kubernetes.Namespace, "{user}", user)
			for _, v := range []string{"list", "watch"} {
				if !granted[ns][v] {
					t.Errorf("agents.%s.kubernetes: the gateway may not %s pods in %s (for %s): add a RoleBinding there (dev-pod/rbac.yaml)", name, v, ns, user)
				}
			}
		}
	}
}

// (i) The example dev pod is what "upgate inject" makes of the app's
// Deployment (inject/deployment.yaml) with the gateway's selector and port,
// the agent in the app's image and the example hooks: regenerate it with
// the command in that file's header.
func TestInjectedDevPod(t *testing.T) {
	const (
		user    = "alice"
		input   = "inject/deployment.yaml"
		output  = manifestDir + "/dev-pod/deployment.yaml"
		root    = "/var/www/html"
		command = "/usr/local/bin/upgate"
		hooksCM = "upgate-hooks"
	)
	m := load(t)
	var checked int
	for _, g := range m.gateways(t) {
		for name, a := range g.parsed.Agents {
			k := a.Kubernetes
			if !k.Enabled() {
				continue
			}
			checked++
			in, err := os.ReadFile(input)
			if err != nil {
				t.Fatal(err)
			}
			opts := inject.Options{User: user, Root: root, Command: command, Hooks: hooksCM, Selector: k.Selector, Port: k.Port}
			var out bytes.Buffer
			if err := inject.Inject(bytes.NewReader(in), &out, opts); err != nil {
				t.Fatalf("inject %s: %v", input, err)
			}
			want, err := os.ReadFile(output)
			if err != nil {
				t.Fatal(err)
			}
			cmdline := fmt.Sprintf("upgate inject --user %s --root %s --command %s --hooks %s --selector '%s' --port %d", user, root, command, hooksCM, k.Selector, k.Port)
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("%s is not what upgate inject makes of %s for agents.%s; regenerate it:\n  go run ./cmd/%s < deploy/%s > deploy/%s",
					output, input, name, cmdline, input, output)
			}
			if !strings.Contains(string(in), "upgate inject --user "+user+" --root "+root+" \\\n#     --command "+command+" --hooks "+hooksCM) {
				t.Errorf("%s: its header does not show the inject command (%s)", input, cmdline)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no agents.NAME.kubernetes entry: nothing to check the injected dev pod against")
	}
}
