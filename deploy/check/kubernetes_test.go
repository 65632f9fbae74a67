package check

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"path"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/masterkey"
	"github.com/keygate/keygate/server"
)

// manifests is one overlay's `kustomize build` output, each object decoded
// strictly into its k8s.io/api type.
type manifests struct {
	configMaps   []corev1.ConfigMap
	secrets      []corev1.Secret
	services     []corev1.Service
	netpols      []networkingv1.NetworkPolicy
	deployments  []appsv1.Deployment
	statefulSets []appsv1.StatefulSet
	pdbs         []policyv1.PodDisruptionBudget
}

// build runs kustomize (the library kubectl's -k uses) on an overlay
// directory and returns each resource as YAML.
func build(t *testing.T, dir string) [][]byte {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var docs [][]byte
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatalf("kustomize build %s: %v", dir, err)
		}
		docs = append(docs, y)
	}
	return docs
}

// strict decodes doc into v as the API server does: field names matched
// case-sensitively, and any field v's type does not have, or any field
// given twice, is an error. (sigs.k8s.io/yaml's UnmarshalStrict alone
// is not enough: encoding/json matches names case-insensitively, so
// "readOnlyRootFileSystem" would silently count as readOnlyRootFilesystem
// there while the API server rejects or drops it.)
func strict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(j, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// decode sorts the documents by kind into their types. An unexpected kind
// or apiVersion is an error: a test that skipped what it does not know
// would pass on a typo in `kind:`.
func decode(docs [][]byte) (manifests, error) {
	var m manifests
	for _, doc := range docs {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return m, err
		}
		var err error
		want := map[string]string{"ConfigMap": "v1", "Secret": "v1", "Service": "v1", "NetworkPolicy": "networking.k8s.io/v1",
			"Deployment": "apps/v1", "StatefulSet": "apps/v1", "PodDisruptionBudget": "policy/v1"}[head.Kind]
		if want == "" {
			return m, fmt.Errorf("%s %s: a kind this check does not know", head.Kind, head.Metadata.Name)
		}
		if head.APIVersion != want {
			return m, fmt.Errorf("%s %s: apiVersion %q, want %q", head.Kind, head.Metadata.Name, head.APIVersion, want)
		}
		switch head.Kind {
		case "ConfigMap":
			m.configMaps = append(m.configMaps, corev1.ConfigMap{})
			err = strict(doc, &m.configMaps[len(m.configMaps)-1])
		case "Secret":
			m.secrets = append(m.secrets, corev1.Secret{})
			err = strict(doc, &m.secrets[len(m.secrets)-1])
		case "Service":
			m.services = append(m.services, corev1.Service{})
			err = strict(doc, &m.services[len(m.services)-1])
		case "NetworkPolicy":
			m.netpols = append(m.netpols, networkingv1.NetworkPolicy{})
			err = strict(doc, &m.netpols[len(m.netpols)-1])
		case "Deployment":
			m.deployments = append(m.deployments, appsv1.Deployment{})
			err = strict(doc, &m.deployments[len(m.deployments)-1])
		case "StatefulSet":
			m.statefulSets = append(m.statefulSets, appsv1.StatefulSet{})
			err = strict(doc, &m.statefulSets[len(m.statefulSets)-1])
		case "PodDisruptionBudget":
			m.pdbs = append(m.pdbs, policyv1.PodDisruptionBudget{})
			err = strict(doc, &m.pdbs[len(m.pdbs)-1])
		}
		if err != nil {
			return m, fmt.Errorf("%s %s: %w", head.Kind, head.Metadata.Name, err)
		}
	}
	return m, nil
}

// workload is what the checks need of a Deployment or a StatefulSet.
type workload struct {
	kind     string
	replicas int32
	selector map[string]string
	pod      corev1.PodTemplateSpec
	// claims are the StatefulSet's volumeClaimTemplates' names.
	claims []string
}

// overlay is what one overlay must be.
type overlay struct {
	dir      string
	kind     string // Deployment or StatefulSet
	replicas int32
	store    string
	// dataVolume says whether the data dir's volume is right for the store.
	dataVolume func(w workload, name string) error
}

var overlays = []overlay{
	{dir: "redis", kind: "Deployment", replicas: 3, store: config.StoreRedis,
		dataVolume: func(w workload, name string) error {
			for _, v := range w.pod.Spec.Volumes {
				if v.Name == name {
					if v.EmptyDir == nil {
						return fmt.Errorf("the data dir's volume %q is not an emptyDir", name)
					}
					return nil
				}
			}
			return fmt.Errorf("the data dir's volume %q is not in the pod", name)
		}},
	{dir: "embedded", kind: "StatefulSet", replicas: 1, store: config.StoreBolt,
		dataVolume: func(w workload, name string) error {
			if !slices.Contains(w.claims, name) {
				return fmt.Errorf("the data dir's volume %q is not one of the volumeClaimTemplates %v: the bbolt database would not survive a restart", name, w.claims)
			}
			return nil
		}},
}

// problems checks one overlay's decoded manifests against what keygate
// needs and reads; each problem is one line. It returns the probe paths it
// saw, which the caller checks against a running keygate.
func (o overlay) problems(m manifests, known map[string]bool) (problems []string, probePaths []string) {
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	var ws []workload
	for _, d := range m.deployments {
		r := int32(1)
		if d.Spec.Replicas != nil {
			r = *d.Spec.Replicas
		}
		ws = append(ws, workload{kind: "Deployment", replicas: r, selector: selectorLabels(d.Spec.Selector), pod: d.Spec.Template})
	}
	for _, s := range m.statefulSets {
		r := int32(1)
		if s.Spec.Replicas != nil {
			r = *s.Spec.Replicas
		}
		w := workload{kind: "StatefulSet", replicas: r, selector: selectorLabels(s.Spec.Selector), pod: s.Spec.Template}
		for _, c := range s.Spec.VolumeClaimTemplates {
			w.claims = append(w.claims, c.Name)
		}
		ws = append(ws, w)
	}
	if len(ws) != 1 || ws[0].kind != o.kind {
		bad("want exactly one workload, a %s; got %d (%v)", o.kind, len(ws), ws)
		return problems, nil
	}
	w := ws[0]
	if w.replicas != o.replicas {
		bad("%s has %d replicas, want %d", w.kind, w.replicas, o.replicas)
	}
	podLabels := labels.Set(w.pod.Labels)
	if len(w.selector) == 0 || !labels.SelectorFromSet(w.selector).Matches(podLabels) {
		bad("%s selector %v does not match its pod's labels %v", w.kind, w.selector, w.pod.Labels)
	}

	// Settings: the ConfigMap is what keygate reads; it must hold only
	// names keygate knows and pass keygate's own validation.
	if len(m.configMaps) != 1 {
		bad("want one ConfigMap, got %d", len(m.configMaps))
		return problems, nil
	}
	cm := m.configMaps[0]
	settings := map[string]string{}
	for k, v := range cm.Data {
		if !known[k] {
			bad("ConfigMap %s sets %s, which keygate does not read", cm.Name, k)
		}
		settings[k] = v
	}
	cfg, err := config.Load(nil, func(name string) string { return settings[name] })
	if err != nil {
		bad("ConfigMap %s: keygate refuses these settings: %v", cm.Name, err)
	} else if cfg.Store != o.store {
		bad("ConfigMap %s: store %q, want %q", cm.Name, cfg.Store, o.store)
	}
	_, listenPort, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		bad("listen %q: %v", cfg.Listen, err)
	}
	if host, _, _ := net.SplitHostPort(cfg.Listen); host != "0.0.0.0" && host != "" && host != "::" {
		bad("listen %q: the kubelet's probes and the Service reach the pod's IP, not loopback; listen on 0.0.0.0", cfg.Listen)
	}

	// The Secret template: placeholders only, and the keys the pod uses.
	secrets := map[string]map[string]string{}
	for _, s := range m.secrets {
		data := map[string]string{}
		for k, v := range s.StringData {
			data[k] = v
		}
		for k, v := range s.Data {
			data[k] = string(v)
		}
		secrets[s.Name] = data
		if v, ok := data["master-key"]; ok {
			if _, err := masterkey.Parse(v); err == nil {
				bad("Secret %s holds a real master key: a committed template must hold placeholders only", s.Name)
			}
		}
	}
	secretKey := func(name, key string) bool { _, ok := secrets[name][key]; return ok }

	spec := w.pod.Spec
	if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
		bad("pod securityContext: runAsNonRoot is not true")
	}
	if spec.SecurityContext == nil || spec.SecurityContext.SeccompProfile == nil || spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		bad("pod securityContext: seccompProfile is not RuntimeDefault")
	}
	if len(spec.Containers) != 1 {
		bad("want one container, got %d", len(spec.Containers))
		return problems, nil
	}
	c := spec.Containers[0]

	// Ports: the container port is keygate's listen port, named http, and
	// the probes and the Service point at it.
	var httpPort *corev1.ContainerPort
	for i, p := range c.Ports {
		if p.Name == "http" {
			httpPort = &c.Ports[i]
		}
	}
	if httpPort == nil {
		bad("container %s has no port named http", c.Name)
		return problems, nil
	}
	if itoa(httpPort.ContainerPort) != listenPort {
		bad("container port http is %d, but keygate listens on %s", httpPort.ContainerPort, cfg.Listen)
	}
	resolves := func(p intstr.IntOrString) bool {
		return (p.Type == intstr.String && p.StrVal == httpPort.Name) || (p.Type == intstr.Int && p.IntVal == httpPort.ContainerPort)
	}
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			bad("%s: not an httpGet probe", pr.name)
			continue
		}
		probePaths = append(probePaths, pr.probe.HTTPGet.Path)
		if pr.probe.HTTPGet.Path != pr.path {
			bad("%s: path %q, want %q", pr.name, pr.probe.HTTPGet.Path, pr.path)
		}
		if !resolves(pr.probe.HTTPGet.Port) {
			bad("%s: port %s is not keygate's port %d", pr.name, pr.probe.HTTPGet.Port.String(), httpPort.ContainerPort)
		}
	}
	if len(m.services) != 1 {
		bad("want one Service, got %d", len(m.services))
	}
	for _, s := range m.services {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) || len(s.Spec.Selector) == 0 {
			bad("Service %s selector %v does not match the pod", s.Name, s.Spec.Selector)
		}
		for _, p := range s.Spec.Ports {
			if !resolves(p.TargetPort) {
				bad("Service %s: targetPort %s is not keygate's port", s.Name, p.TargetPort.String())
			}
		}
	}

	// Metrics: on, on every interface of the pod, on a container port
	// named metrics that a NetworkPolicy lets in, and on no Service (the
	// Service faces clients; Prometheus scrapes the pods).
	var metricsPort *corev1.ContainerPort
	for i, p := range c.Ports {
		if p.Name == "metrics" {
			metricsPort = &c.Ports[i]
		}
	}
	switch host, port, err := net.SplitHostPort(cfg.MetricsListen); {
	case cfg.MetricsListen == "":
		bad("metrics are off: set KEYGATE_METRICS_LISTEN")
	case err != nil:
		bad("metrics_listen %q: %v", cfg.MetricsListen, err)
	case host != "0.0.0.0" && host != "" && host != "::":
		bad("metrics_listen %q: Prometheus reaches the pod's IP, not loopback; listen on 0.0.0.0", cfg.MetricsListen)
	case metricsPort == nil:
		bad("container %s has no port named metrics", c.Name)
	case itoa(metricsPort.ContainerPort) != port:
		bad("container port metrics is %d, but keygate serves metrics on %s", metricsPort.ContainerPort, cfg.MetricsListen)
	}
	if metricsPort != nil {
		isMetrics := func(p intstr.IntOrString) bool {
			return (p.Type == intstr.String && p.StrVal == "metrics") || (p.Type == intstr.Int && p.IntVal == metricsPort.ContainerPort)
		}
		for _, s := range m.services {
			for _, p := range s.Spec.Ports {
				if isMetrics(p.TargetPort) {
					bad("Service %s carries the metrics port: keep /metrics off the client-facing Service", s.Name)
				}
			}
		}
		metricsIn := false
		for _, np := range m.netpols {
			for _, in := range np.Spec.Ingress {
				for _, p := range in.Ports {
					if p.Port != nil && isMetrics(*p.Port) {
						metricsIn = true
					}
				}
			}
		}
		if !metricsIn {
			bad("no NetworkPolicy lets Prometheus in on the metrics port")
		}
		if a := w.pod.Annotations; a["prometheus.io/port"] != itoa(metricsPort.ContainerPort) {
			bad("pod annotation prometheus.io/port %q is not the metrics port %d", a["prometheus.io/port"], metricsPort.ContainerPort)
		}
	}

	// Resources and the container's security context.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
			bad("no %s request", r)
		}
		if q, ok := c.Resources.Limits[r]; !ok || q.IsZero() {
			bad("no %s limit", r)
		}
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		bad("container %s has no securityContext", c.Name)
	default:
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			bad("readOnlyRootFilesystem is not true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			bad("allowPrivilegeEscalation is not false")
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			bad("capabilities: want drop [ALL] and nothing added")
		}
		if sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot {
			bad("container runAsNonRoot is false")
		}
	}

	// Environment: names keygate reads; the ConfigMap by reference; the
	// admin credentials from the Secret; the master key as a file from
	// the Secret.
	fromConfigMap := false
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil && ef.ConfigMapRef.Name == cm.Name {
			fromConfigMap = true
		}
	}
	if !fromConfigMap {
		bad("the container does not take its environment from ConfigMap %s", cm.Name)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if !known[e.Name] {
			bad("env %s: keygate does not read it", e.Name)
		}
		env[e.Name] = e
	}
	for _, name := range []string{"KEYGATE_ADMIN_CLIENT_ID", "KEYGATE_ADMIN_CLIENT_SECRET"} {
		e, ok := env[name]
		switch {
		case !ok:
			bad("env %s is not set", name)
		case e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil:
			bad("env %s does not come from a Secret", name)
		case !secretKey(e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key):
			bad("env %s: Secret %s has no key %q", name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
		}
	}
	if _, ok := env["KEYGATE_MASTER_KEY"]; ok {
		bad("KEYGATE_MASTER_KEY in the environment: use KEYGATE_MASTER_KEY_FILE and a Secret volume")
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[path.Clean(vm.MountPath)] = vm
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	if keyFile := env["KEYGATE_MASTER_KEY_FILE"].Value; keyFile == "" {
		bad("KEYGATE_MASTER_KEY_FILE is not set")
	} else {
		vm, ok := mounts[path.Dir(keyFile)]
		v := volumes[vm.Name]
		switch {
		case !ok:
			bad("KEYGATE_MASTER_KEY_FILE %s: no volume is mounted at %s", keyFile, path.Dir(keyFile))
		case v.Secret == nil:
			bad("KEYGATE_MASTER_KEY_FILE %s: the volume %q is not a Secret", keyFile, vm.Name)
		default:
			key := path.Base(keyFile) // without items, each key is a file
			for _, it := range v.Secret.Items {
				if it.Path == path.Base(keyFile) {
					key = it.Key
				}
			}
			if !secretKey(v.Secret.SecretName, key) {
				bad("KEYGATE_MASTER_KEY_FILE %s: Secret %s has no key %q", keyFile, v.Secret.SecretName, key)
			}
		}
	}
	if vm, ok := mounts[path.Clean(cfg.DataDir)]; !ok {
		bad("nothing is mounted at the data dir %s (the root filesystem is read-only)", cfg.DataDir)
	} else if err := o.dataVolume(w, vm.Name); err != nil {
		bad("%v", err)
	}

	// Disruption budget and network policy select the pods and let HTTP in.
	if o.kind == "Deployment" {
		if len(m.pdbs) != 1 {
			bad("want one PodDisruptionBudget, got %d", len(m.pdbs))
		}
		for _, p := range m.pdbs {
			if p.Spec.Selector == nil || !labels.SelectorFromSet(p.Spec.Selector.MatchLabels).Matches(podLabels) {
				bad("PodDisruptionBudget %s does not select the pods", p.Name)
			}
		}
	}
	httpIn := false
	for _, np := range m.netpols {
		if !labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels).Matches(podLabels) || len(np.Spec.PodSelector.MatchLabels) == 0 {
			bad("NetworkPolicy %s does not select the pods", np.Name)
		}
		for _, in := range np.Spec.Ingress {
			for _, p := range in.Ports {
				if p.Port != nil && resolves(*p.Port) {
					httpIn = true
				}
			}
		}
	}
	if !httpIn {
		bad("no NetworkPolicy lets traffic in on keygate's port")
	}
	return problems, probePaths
}

func selectorLabels(s *metav1.LabelSelector) map[string]string {
	if s == nil {
		return nil
	}
	return s.MatchLabels
}

func itoa(n int32) string { return fmt.Sprint(n) }

func TestKubernetesOverlays(t *testing.T) {
	known := knownEnv(t)
	kg := startKeygate(t, server.Options{})
	for _, o := range overlays {
		t.Run(o.dir, func(t *testing.T) {
			m, err := decode(build(t, deployPath("kubernetes", "overlays", o.dir)))
			if err != nil {
				t.Fatal(err)
			}
			problems, paths := o.problems(m, known)
			for _, p := range problems {
				t.Error(p)
			}
			// The probe paths are keygate's: a running keygate answers
			// them 200 (and a path it lacks 404, so the check can fail).
			for _, p := range append(paths, "/no-such-probe") {
				status, body := get(t, kg, p)
				want := http.StatusOK
				if p == "/no-such-probe" {
					want = http.StatusNotFound
				}
				if status != want {
					t.Errorf("GET %s on keygate = %d %s, want %d", p, status, strings.TrimSpace(string(body)), want)
				}
			}
		})
	}
}

// TestKubernetesCheckCatchesMistakes makes one deliberate mistake at a time
// in the redis overlay's build output and expects the check to name it: a
// check that passes everything would pass the real manifests too.
func TestKubernetesCheckCatchesMistakes(t *testing.T) {
	known := knownEnv(t)
	o := overlays[0]
	docs := build(t, deployPath("kubernetes", "overlays", o.dir))
	tests := []struct {
		name, old, new string
		want           string // in the decode error or one problem
	}{
		{"misspelt field", "readOnlyRootFilesystem:", "readOnlyRootFileSystem:", `unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem"`},
		{"wrong probe path", "path: /readyz", "path: /ready", `readinessProbe: path "/ready", want "/readyz"`},
		{"probe on another port", "path: /healthz\n            port: http", "path: /healthz\n            port: 9090", "livenessProbe: port 9090 is not keygate's port 8080"},
		{"misspelt env name", "name: KEYGATE_ADMIN_CLIENT_ID", "name: KEYGATE_ADMIN_CLIENTID", "env KEYGATE_ADMIN_CLIENTID: keygate does not read it"},
		{"misspelt setting", "KEYGATE_REDIS_URL:", "KEYGATE_REDISURL:", "ConfigMap keygate-config sets KEYGATE_REDISURL, which keygate does not read"},
		{"container port not the listen port", "containerPort: 8080", "containerPort: 8081", "container port http is 8081, but keygate listens on 0.0.0.0:8080"},
		{"loopback listen", "KEYGATE_LISTEN: 0.0.0.0:8080", "KEYGATE_LISTEN: 127.0.0.1:8080", "listen on 0.0.0.0"},
		{"two replicas", "replicas: 3", "replicas: 2", "Deployment has 2 replicas, want 3"},
		{"capability kept", "- ALL", "- NET_RAW", "capabilities: want drop [ALL]"},
		{"a real master key", "master-key: REPLACE-ME-with-openssl-rand-base64-32", "master-key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "holds a real master key"},
		{"data dir not mounted", "mountPath: /data", "mountPath: /srv", "nothing is mounted at the data dir /data"},
		{"metrics off", "KEYGATE_METRICS_LISTEN: 0.0.0.0:9464", "KEYGATE_METRICS_LISTEN: \"\"", "metrics are off"},
		{"metrics port not the metrics_listen port", "containerPort: 9464", "containerPort: 9465", "container port metrics is 9465, but keygate serves metrics on 0.0.0.0:9464"},
		{"metrics on the Service", "targetPort: http", "targetPort: metrics", "Service keygate carries the metrics port"},
		{"a kind the check does not know", "kind: PodDisruptionBudget", "kind: PodDisruptionBudgetx", "a kind this check does not know"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, new := strings.ReplaceAll(tt.old, `\n`, "\n"), strings.ReplaceAll(tt.new, `\n`, "\n")
			var changed [][]byte
			replaced := 0
			for _, d := range docs {
				replaced += strings.Count(string(d), old)
				changed = append(changed, []byte(strings.Replace(string(d), old, new, 1)))
			}
			if replaced == 0 {
				t.Fatalf("%q is not in the build output: the mistake was not made", old)
			}
			m, err := decode(changed)
			var got []string
			if err != nil {
				got = []string{err.Error()}
			} else {
				got, _ = o.problems(m, known)
			}
			if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("with %q for %q the check says %q, want a line containing %q", new, old, got, tt.want)
			}
		})
	}
}
