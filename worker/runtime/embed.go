// Package runtime ships gorn's Python app runtime, gorn_runtime.py, inside
// the gorn binary.
package runtime

import _ "embed"

// Source is the text of gorn_runtime.py, the stdlib-only Python program a
// worker runs (as `python -c Loader`) to import and call the WSGI app.
//
//go:embed gorn_runtime.py
var Source []byte

// Loader is the `python -c` program that starts every Python process gorn
// runs. Its first argument is the number of a file descriptor holding the
// process's configuration as one line of JSON, then Source. It puts the
// configuration in sys.argv[1] (so it never shows in ps) and runs Source
// as the __main__ module, so tracebacks name gorn_runtime.py.
const Loader = `import sys,os
f=os.fdopen(int(sys.argv[1]),"rb");sys.argv[1]=f.readline().decode();s=f.read();f.close()
g={"__name__":"__main__","__file__":"gorn_runtime.py","__builtins__":__builtins__}
del f
exec(compile(s,"gorn_runtime.py","exec"),g)
`
