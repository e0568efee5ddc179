package deploy

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockguard/lockguard/internal/config"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// manifests is every object in kubernetes/, one of each kind.
type manifests struct {
	deployment *appsv1.Deployment
	service    *corev1.Service
	configMap  *corev1.ConfigMap
	pdb        *policyv1.PodDisruptionBudget
}

func (m *manifests) deepCopy() *manifests {
	return &manifests{m.deployment.DeepCopy(), m.service.DeepCopy(), m.configMap.DeepCopy(), m.pdb.DeepCopy()}
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// parseManifest decodes one YAML document into the API type its apiVersion
// and kind name, rejecting unknown fields.
func parseManifest(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	var obj any
	switch tm.APIVersion + "/" + tm.Kind {
	case "apps/v1/Deployment":
		obj = &appsv1.Deployment{}
	case "v1/Service":
		obj = &corev1.Service{}
	case "v1/ConfigMap":
		obj = &corev1.ConfigMap{}
	case "policy/v1/PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	default:
		return nil, fmt.Errorf("no check for %s %s: add it to this test", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in kubernetes/: %v", err)
	}
	m := &manifests{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSeparator.Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			obj, err := parseManifest([]byte(doc))
			if err != nil {
				t.Fatalf("%s, document %d: %v", f, i+1, err)
			}
			dup := false
			switch o := obj.(type) {
			case *appsv1.Deployment:
				dup, m.deployment = m.deployment != nil, o
			case *corev1.Service:
				dup, m.service = m.service != nil, o
			case *corev1.ConfigMap:
				dup, m.configMap = m.configMap != nil, o
			case *policyv1.PodDisruptionBudget:
				dup, m.pdb = m.pdb != nil, o
			}
			if dup {
				t.Fatalf("%s: a second %T; the checks expect one of each", f, obj)
			}
		}
	}
	if m.deployment == nil || m.service == nil || m.configMap == nil || m.pdb == nil {
		t.Fatalf("want a Deployment, a Service, a ConfigMap and a PodDisruptionBudget; got %+v", m)
	}
	return m
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// check returns every way in which the manifests break what lockguard needs
// in a cluster. dir is a scratch directory for the configuration file.
func check(m *manifests, dir string) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	d := m.deployment
	pod := d.Spec.Template.Spec
	podLabels := labels.Set(d.Spec.Template.Labels)
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	if replicas < 2 {
		bad("Deployment has %d replicas; want at least 2 so that a drain or a crash never leaves no lockguard", replicas)
	}
	if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err != nil || sel.Empty() || !sel.Matches(podLabels) {
		bad("Deployment selector %v does not select its pod template's labels %v (%v)", d.Spec.Selector, podLabels, err)
	}
	if s := d.Spec.Strategy; s.Type != appsv1.RollingUpdateDeploymentStrategyType || s.RollingUpdate == nil ||
		s.RollingUpdate.MaxUnavailable == nil || s.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		bad("Deployment strategy should be RollingUpdate with maxUnavailable 0 (surge first, then drain): %+v", s)
	}

	// PodDisruptionBudget: selects the pods and allows one disruption.
	if sel, err := metav1.LabelSelectorAsSelector(m.pdb.Spec.Selector); err != nil || sel.Empty() || !sel.Matches(podLabels) {
		bad("PodDisruptionBudget selector %v does not match the Deployment's pod labels %v (%v)", m.pdb.Spec.Selector, podLabels, err)
	}
	switch p := m.pdb.Spec; {
	case p.MaxUnavailable != nil:
		if n, err := intstr.GetScaledValueFromIntOrPercent(p.MaxUnavailable, int(replicas), false); err != nil || n < 1 || n >= int(replicas) {
			bad("PodDisruptionBudget maxUnavailable %v: want 1 to %d of %d replicas", p.MaxUnavailable, replicas-1, replicas)
		}
	case p.MinAvailable != nil:
		if n, err := intstr.GetScaledValueFromIntOrPercent(p.MinAvailable, int(replicas), true); err != nil || n < 1 || n >= int(replicas) {
			bad("PodDisruptionBudget minAvailable %v: want 1 to %d of %d replicas", p.MinAvailable, replicas-1, replicas)
		}
	default:
		bad("PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}

	if len(pod.Containers) != 1 {
		bad("want one container in the pod, got %d", len(pod.Containers))
		return errs
	}
	c := pod.Containers[0]
	portByName := map[string]int32{}
	for _, p := range c.Ports {
		portByName[p.Name] = p.ContainerPort
	}
	resolve := func(p intstr.IntOrString) int32 {
		if p.Type == intstr.String {
			return portByName[p.StrVal]
		}
		return p.IntVal
	}

	// The container's arguments and the ConfigMap, loaded as lockguard
	// itself would load them.
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		bad("container args %q: want `serve …`", c.Args)
		return errs
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	var loader config.Loader
	loader.RegisterFlags(fs)
	fs.Bool("throwaway-postgres", false, "")
	if err := fs.Parse(c.Args[1:]); err != nil || fs.NArg() > 0 {
		bad("container args %q: %v", c.Args, err)
		return errs
	}
	cfgPath := loader.File
	var key string
	for _, vm := range c.VolumeMounts {
		rel, err := filepath.Rel(vm.MountPath, cfgPath)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil && v.ConfigMap.Name == m.configMap.Name {
				key = rel
			}
		}
	}
	data, ok := m.configMap.Data[key]
	if cfgPath == "" || key == "" || !ok {
		bad("--config %q is not a key of ConfigMap %s mounted into the container", cfgPath, m.configMap.Name)
		return errs
	}
	loader.File = filepath.Join(dir, "lockguard.yaml")
	if err := os.WriteFile(loader.File, []byte(data), 0o600); err != nil {
		bad("%v", err)
		return errs
	}
	env := map[string]string{}
	fromSecret := map[string]bool{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		isSecret := e.Value == "" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
		fromSecret[e.Name] = isSecret
		if (e.Name == "LOCKGUARD_ADMIN_TOKEN" || e.Name == "LOCKGUARD_MONITOR_DSN" || e.Name == "LOCKGUARD_REPLICA_SECRET") && !isSecret {
			bad("%s must come from a Secret (valueFrom.secretKeyRef), not a literal", e.Name)
		}
	}
	// Replicas share lock knowledge only through PostgreSQL: each needs the
	// monitor connection that reads pg_locks.
	if replicas >= 2 && !fromSecret["LOCKGUARD_MONITOR_DSN"] {
		bad("%d replicas without LOCKGUARD_MONITOR_DSN (from a Secret): a replica would not see the DDL in flight through the others", replicas)
	}
	for _, secret := range []string{"admin-token", "monitor-dsn", "replica-secret"} {
		if strings.Contains(data, secret+":") {
			bad("the ConfigMap sets %s: secrets belong in a Secret, passed as LOCKGUARD_* environment variables", secret)
		}
	}
	if slices.Contains(c.Args, "--admin-token") || slices.Contains(c.Args, "--monitor-dsn") || slices.Contains(c.Args, "--replica-secret") {
		bad("a secret on the command line (visible in the pod spec and the process list): use a Secret")
	}
	loader.Getenv = func(k string) string { return env[k] }
	cfg, err := loader.Load()
	if err != nil {
		bad("lockguard rejects the ConfigMap's settings with these args: %v", err)
		return errs
	}
	if cfg.Upstream == "" {
		bad("the configuration names no upstream")
	}

	// Ports: the Service reaches the listen port; the probes reach the admin
	// endpoint, which must listen on the pod's address.
	adminHost, adminPort, err := splitPort(cfg.Admin)
	if err != nil || (adminHost != "0.0.0.0" && adminHost != "" && adminHost != "::") {
		bad("admin address %q: the kubelet's probes need it on all interfaces (--admin 0.0.0.0:PORT)", cfg.Admin)
	}
	if portByName["admin"] == 0 || portByName["admin"] != adminPort {
		bad("container port \"admin\" is %d, lockguard's admin endpoint listens on %q", portByName["admin"], cfg.Admin)
	}
	if len(m.service.Spec.Selector) == 0 || !labels.SelectorFromSet(m.service.Spec.Selector).Matches(podLabels) {
		bad("Service selector %v does not match the pod labels %v", m.service.Spec.Selector, podLabels)
	}
	for _, sp := range m.service.Spec.Ports {
		target := resolve(sp.TargetPort)
		listening := false
		for _, l := range cfg.Listen {
			if h, p, err := splitPort(l); err == nil && p == target && (h == "0.0.0.0" || h == "" || h == "::") {
				listening = true
			}
		}
		if !listening {
			bad("Service port %d targets container port %d, where lockguard does not listen on all interfaces (listen %q)", sp.Port, target, cfg.Listen)
		}
		if target == adminPort {
			bad("Service publishes the admin port %d", target)
		}
	}
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil {
			bad("%s: want an HTTP GET of %s on the admin port", name, path)
			return
		}
		if p.HTTPGet.Path != path || resolve(p.HTTPGet.Port) != adminPort {
			bad("%s: GET %s on port %d; want %s on the admin port %d", name, p.HTTPGet.Path, resolve(p.HTTPGet.Port), path, adminPort)
		}
	}
	probe("readinessProbe", c.ReadinessProbe, "/readyz")
	probe("livenessProbe", c.LivenessProbe, "/healthz")

	// Termination: preStop sleep (the image has no shell), then SIGTERM and
	// drain-timeout, all inside the grace period.
	var preStop time.Duration
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds <= 0 {
		bad("preStop: want a sleep action so that endpoints are removed before SIGTERM")
	} else {
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		if c.Lifecycle.PreStop.Exec != nil {
			bad("preStop exec: the distroless image has no shell or sleep binary")
		}
	}
	var grace time.Duration = 30 * time.Second // Kubernetes' default
	if pod.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	}
	if grace <= preStop+cfg.DrainTimeout {
		bad("terminationGracePeriodSeconds %v must exceed preStop sleep %v + drain-timeout %v, or the kubelet kills lockguard mid-drain",
			grace, preStop, cfg.DrainTimeout)
	}

	// Security: non-root, read-only root filesystem, no privileges.
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || (psc.RunAsUser != nil && *psc.RunAsUser == 0) {
		bad("pod securityContext: want runAsNonRoot: true and a non-zero runAsUser")
	}
	csc := c.SecurityContext
	if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		bad("container securityContext: want readOnlyRootFilesystem: true")
	}
	if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		bad("container securityContext: want allowPrivilegeEscalation: false")
	}
	if csc == nil || csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
		bad("container securityContext: want capabilities.drop [ALL]")
	}
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil && *c.SecurityContext.RunAsUser == 0 {
		bad("container runs as root")
	}

	// Resources: the scheduler needs requests; memory is bounded.
	r := c.Resources
	if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() {
		bad("resources.requests: want cpu and memory")
	}
	if r.Limits.Memory().IsZero() {
		bad("resources.limits: want a memory limit")
	}
	return errs
}

func splitPort(hostport string) (string, int32, error) {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("%q has no port", hostport)
	}
	var p int32
	if _, err := fmt.Sscan(hostport[i+1:], &p); err != nil {
		return "", 0, err
	}
	return strings.Trim(hostport[:i], "[]"), p, nil
}

// TestManifests parses every manifest in kubernetes/ strictly with the
// Kubernetes API types and checks them.
func TestManifests(t *testing.T) {
	m := loadManifests(t)
	for _, err := range check(m, t.TempDir()) {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	t.Logf("%d replicas; PDB maxUnavailable %v; grace %ds > preStop %ds + drain-timeout (ConfigMap)",
		*m.deployment.Spec.Replicas, m.pdb.Spec.MaxUnavailable, *m.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds,
		m.deployment.Spec.Template.Spec.Containers[0].Lifecycle.PreStop.Sleep.Seconds)
}

// TestManifestChecksCatchMistakes proves each check can fail: every mutation
// of the real manifests must be reported.
func TestManifestChecksCatchMistakes(t *testing.T) {
	orig := loadManifests(t)
	container := func(m *manifests) *corev1.Container { return &m.deployment.Spec.Template.Spec.Containers[0] }
	setArg := func(m *manifests, flag, value string) {
		args := container(m).Args
		for i := range args {
			if args[i] == flag && i+1 < len(args) {
				args[i+1] = value
			}
		}
	}
	setConfig := func(m *manifests, key, value string) {
		var lines []string
		for _, l := range strings.Split(m.configMap.Data["lockguard.yaml"], "\n") {
			if !strings.HasPrefix(l, key+":") {
				lines = append(lines, l)
			}
		}
		m.configMap.Data["lockguard.yaml"] = strings.Join(append(lines, key+": "+value), "\n")
	}
	cases := []struct {
		name   string
		mutate func(m *manifests)
		want   string
	}{
		{"one replica", func(m *manifests) { one := int32(1); m.deployment.Spec.Replicas = &one }, "replicas"},
		{"grace period equal to preStop + drain", func(m *manifests) {
			g := int64(30)
			m.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds = &g
		}, "terminationGracePeriodSeconds"},
		{"drain-timeout longer than the grace period", func(m *manifests) { setConfig(m, "drain-timeout", "60s") }, "terminationGracePeriodSeconds"},
		{"no grace period (default 30s)", func(m *manifests) { m.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds = nil }, "terminationGracePeriodSeconds"},
		{"readiness on /healthz", func(m *manifests) { container(m).ReadinessProbe.HTTPGet.Path = "/healthz" }, "readinessProbe"},
		{"liveness on the postgres port", func(m *manifests) { container(m).LivenessProbe.HTTPGet.Port = intstr.FromString("postgres") }, "livenessProbe"},
		{"admin on loopback", func(m *manifests) { setArg(m, "--admin", "127.0.0.1:9633") }, "admin address"},
		{"admin on another port", func(m *manifests) { setArg(m, "--admin", "0.0.0.0:9000") }, "container port \"admin\""},
		{"preStop exec", func(m *manifests) {
			container(m).Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "5"}}}
		}, "preStop"},
		{"PDB selects other pods", func(m *manifests) { m.pdb.Spec.Selector.MatchLabels["app.kubernetes.io/name"] = "other" }, "PodDisruptionBudget selector"},
		{"PDB allows no disruption", func(m *manifests) { zero := intstr.FromInt32(0); m.pdb.Spec.MaxUnavailable = &zero }, "maxUnavailable"},
		{"Service targets the admin port", func(m *manifests) { m.service.Spec.Ports[0].TargetPort = intstr.FromString("admin") }, "Service"},
		{"Service selects other pods", func(m *manifests) { m.service.Spec.Selector = map[string]string{"app": "x"} }, "Service selector"},
		{"writable root filesystem", func(m *manifests) { f := false; container(m).SecurityContext.ReadOnlyRootFilesystem = &f }, "readOnlyRootFilesystem"},
		{"root user", func(m *manifests) {
			root := int64(0)
			m.deployment.Spec.Template.Spec.SecurityContext.RunAsUser = &root
		}, "runAsNonRoot"},
		{"unknown key in the ConfigMap", func(m *manifests) { setConfig(m, "upstream-ssl", "disable") }, "rejects the ConfigMap"},
		{"config not mounted", func(m *manifests) { setArg(m, "--config", "/etc/other/lockguard.yaml") }, "--config"},
		{"no memory limit", func(m *manifests) { delete(container(m).Resources.Limits, corev1.ResourceMemory) }, "memory limit"},
		{"admin token in the ConfigMap", func(m *manifests) { setConfig(m, "admin-token", "hunter2") }, "secrets belong in a Secret"},
		{"admin token as a literal", func(m *manifests) {
			c := container(m)
			c.Env = append(c.Env, corev1.EnvVar{Name: "LOCKGUARD_ADMIN_TOKEN", Value: "hunter2"})
		}, "must come from a Secret"},
		{"no monitor connection", func(m *manifests) {
			c := container(m)
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "LOCKGUARD_MONITOR_DSN" })
		}, "LOCKGUARD_MONITOR_DSN"},
		{"monitor DSN as a literal", func(m *manifests) {
			c := container(m)
			for i := range c.Env {
				if c.Env[i].Name == "LOCKGUARD_MONITOR_DSN" {
					c.Env[i] = corev1.EnvVar{Name: "LOCKGUARD_MONITOR_DSN", Value: "postgres://u:pw@db/app"}
				}
			}
		}, "must come from a Secret"},
		{"maxUnavailable 1 in the rollout", func(m *manifests) {
			one := intstr.FromInt32(1)
			m.deployment.Spec.Strategy.RollingUpdate.MaxUnavailable = &one
		}, "maxUnavailable 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := orig.deepCopy()
			tc.mutate(m)
			errs := check(m, t.TempDir())
			if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), tc.want) }) {
				t.Fatalf("mutation not caught: want an error mentioning %q, got %v", tc.want, errors.Join(errs...))
			}
		})
	}
}

// TestManifestStrictParsing: a misspelt field is an error, not a silent
// default.
func TestManifestStrictParsing(t *testing.T) {
	b, err := os.ReadFile("kubernetes/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	typo := strings.Replace(string(b), "terminationGracePeriodSeconds:", "terminationGracePeriodSecond:", 1)
	if _, err := parseManifest([]byte(typo)); err == nil || !strings.Contains(err.Error(), "terminationGracePeriodSecond") {
		t.Fatalf("misspelt field: got %v, want a strict-decoding error naming it", err)
	}
}
