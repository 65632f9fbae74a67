// Package e2e holds the tests of keygate's separately versioned library
// modules — verify (with verify/ginverify) and client — that run a real
// keygate (server/servertest). They live in the main module because those
// libraries must not require it: a resource server that imports verify
// would otherwise inherit keygate's server, stores and their dependencies.
// The libraries' own tests, which need no keygate, stay in their modules.
package e2e
