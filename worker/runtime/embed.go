// Package runtime ships gorn's Python app runtime, gorn_runtime.py, inside
// the gorn binary.
package runtime

import _ "embed"

// Source is the text of gorn_runtime.py, the stdlib-only Python program a
// worker runs (as `python -c Loader`) to import and call the WSGI app.
//
//go:embed gorn_runtime.py
var Source []byte

// Loader is the `python -c` program that reads Source from the file
// descriptor named in its first argument's "source_fd" and runs it as the
// __main__ module, so tracebacks name gorn_runtime.py.
const Loader = `import sys,os,json
c=json.loads(sys.argv[1]);fd=c["source_fd"];f=os.fdopen(fd,"rb");s=f.read();f.close()
g={"__name__":"__main__","__file__":"gorn_runtime.py","__builtins__":__builtins__}
del c,fd,f,json
exec(compile(s,"gorn_runtime.py","exec"),g)
`
