// Package kube tests the gateway's Kubernetes discovery
// (agents.NAME.kubernetes, backend/podagents) against a real API server:
// kube-apiserver and etcd from internal/kubetest, pods as API objects
// whose status the test writes (loopback pod IPs, ready agent
// containers), real agents listening on those addresses, and real FTP and
// SFTP clients. The gateway authenticates with a ServiceAccount token
// limited by deploy/'s own RBAC manifests.
//
// It needs etcd (Debian's etcd-server) and builds the kube-apiserver once
// when it is missing (internal/kubetest); without etcd it skips, unless
// UPGATE_REQUIRE_INTEROP=1.
//
//	go test -v ./interop/kube
package kube
