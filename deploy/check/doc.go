// Package check holds the tests that check keygate's deployment artefacts
// (deploy/kubernetes, deploy/systemd, deploy/compose.yaml, deploy/envoy)
// against keygate's real routes and configuration. It is a module of its own
// so that k8s.io/api, kustomize, go-control-plane and compose-go never enter
// the main module's go.mod.
package check
