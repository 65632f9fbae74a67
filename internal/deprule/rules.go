package deprule

// K is the import path of the keygate module; verify, verify/ginverify and
// client keep their paths below it when they are modules of their own.
const K = "github.com/keygate/keygate"

const gin = "github.com/gin-gonic/gin/..."

// Rules is keygate's dependency rule (issue #11). Layers point inwards:
// cmd wires everything, server speaks HTTP, and the domain below it —
// the rules of API keys, storage, signing, configuration and the client —
// knows nothing of HTTP frameworks, of the server or of the command.
var Rules = []Rule{
	{
		Name: "1 (domain without HTTP)",
		Why: "the rules of API keys, the stores and the client are used without an HTTP server: " +
			"they may not pull in gin, the server or the command; move the code that needs them up into server or cmd",
		Packages: []string{
			K + "/store/...", K + "/apikey/...", K + "/lastused/...", K + "/webhook/...",
			K + "/scopes", K + "/credential", K + "/signing", K + "/masterkey", K + "/config", K + "/clientaddr", K + "/quota", K + "/certfile/...", K + "/trustedissuer/...",
			K + "/client/...",
		},
		Forbid: []string{gin, K + "/server/...", K + "/cmd/..."},
	},
	{
		Name: "2 (verify stands alone)",
		Why: "resource servers import verify to check tokens; it may use no keygate package but its own " +
			"and no gin (gin support lives in verify/ginverify), or every resource server would build keygate's server and stores",
		Packages: []string{K + "/verify"},
		Forbid:   []string{K + "/...", gin},
		Allow:    []string{K + "/verify/..."},
	},
	{
		Name:     "3 (nothing imports cmd)",
		Why:      "cmd is the outermost layer, the one that wires the others together; code another package needs belongs in that package's layer",
		Packages: []string{K + "/..."},
		// A command may be split into packages of its own below cmd.
		Except: []string{K + "/cmd/..."},
		Forbid: []string{K + "/cmd/..."},
		Direct: true,
	},
	{
		Name: "4 (server holds no secrets)",
		Why: "secrets and sealing belong to the domain package of API keys; the server calls it " +
			"instead of hashing secrets (credential) or sealing signing keys (masterkey) itself",
		Packages: []string{K + "/server"},
		Forbid:   []string{K + "/credential", K + "/masterkey"},
		Direct:   true,
	},
}
