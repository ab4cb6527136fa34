package config

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorn-project/gorn/forwarded"
	"github.com/gorn-project/gorn/logs"
)

// Print writes the settings as gunicorn's --print-config does: one
// "name = value" line per setting (Settings), and one per server hook the
// configuration file defines ("post_fork = <function post_fork>"), sorted
// by name.
func (c *Config) Print(w io.Writer) error {
	settings := c.Settings()
	for _, hook := range c.Hooks {
		settings[hook] = "<function " + hook + ">"
	}
	names := make([]string, 0, len(settings))
	width := 0
	for name := range settings {
		names = append(names, name)
		width = max(width, len(name))
	}
	slices.Sort(names)
	for _, name := range names {
		if _, err := fmt.Fprintf(w, "%-*s = %s\n", width, name, settings[name]); err != nil {
			return err
		}
	}
	return nil
}

// Settings returns the settings by gunicorn's names (gorn's own settings
// by their flag's name, with "_" for "-"), each value a Python literal of
// what gunicorn's validated setting holds (ast.literal_eval reads it back):
// what --print-config prints, and what server hooks read from server.cfg.
// user and group are the ids the workers run as (gunicorn's defaults, the
// effective ids, without --user and --group).
func (c *Config) Settings() map[string]string {
	str := func(s string) string {
		if s == "" {
			return "None"
		}
		return pyString(s)
	}
	list := func(items []string) string {
		quoted := make([]string, len(items))
		for i, s := range items {
			quoted[i] = pyString(s)
		}
		return "[" + strings.Join(quoted, ", ") + "]"
	}
	// commaList is a comma-separated setting as gunicorn's validators
	// leave it: items trimmed, blank ones dropped.
	commaList := func(s string) string {
		var items []string
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		return list(items)
	}
	secs := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }
	boolean := func(b bool) string {
		if b {
			return "True"
		}
		return "False"
	}
	format := c.AccessLogFormat
	if format == "" {
		format = logs.DefaultAccessFormat
	}
	schemeHeaders := c.SecureSchemeHeaders
	if schemeHeaders == "" {
		schemeHeaders = forwarded.DefaultSchemeHeadersJSON
	}
	syslogAddr, facility := c.SyslogTo, c.SyslogFacility
	if syslogAddr == "" {
		syslogAddr = logs.DefaultSyslogAddr
	}
	if facility == "" {
		facility = "user"
	}
	loggerClass := c.LoggerClass
	if loggerClass == "" {
		loggerClass = "gunicorn.glogging.Logger"
	}
	workerClass := "sync"
	if c.Threads > 1 || c.ThreadWorker {
		workerClass = "gthread"
	}
	id := func(id, own int) string {
		if id < 0 {
			id = own
		}
		return strconv.Itoa(id)
	}
	return map[string]string{
		"access_log_format":                 str(format),
		"accesslog":                         str(c.AccessLog),
		"backlog":                           strconv.Itoa(c.Backlog),
		"bind":                              list(c.Binds),
		"body_timeout":                      secs(c.BodyTimeout),
		"boot_timeout":                      secs(c.BootTimeout),
		"ca_certs":                          str(c.CACerts),
		"capture_output":                    boolean(c.CaptureOutput),
		"cert_reqs":                         strconv.Itoa(c.CertReqs),
		"certfile":                          str(c.CertFile),
		"chdir":                             str(c.Chdir),
		"ciphers":                           str(c.Ciphers),
		"disable_redirect_access_to_syslog": boolean(c.DisableRedirectAccessToSyslog),
		"dogstatsd_tags":                    pyString(c.DogstatsdTags),
		"errorlog":                          str(c.ErrorLog),
		"forwarded_allow_ips":               commaList(c.ForwardedAllowIPs),
		"forwarder_headers":                 commaList(c.ForwarderHeaders),
		"graceful_timeout":                  secs(c.GracefulTimeout),
		"group":                             id(c.GID, os.Getegid()),
		"header_map":                        str(c.HeaderMap),
		"header_timeout":                    secs(c.HeaderTimeout),
		"keepalive":                         secs(c.KeepAlive),
		"keyfile":                           str(c.KeyFile),
		"limit_request_body":                strconv.FormatInt(c.LimitRequestBody, 10),
		"limit_request_field_size":          strconv.Itoa(c.LimitRequestFieldSize),
		"limit_request_fields":              strconv.Itoa(c.LimitRequestFields),
		"limit_request_line":                strconv.Itoa(c.LimitRequestLine),
		"logconfig":                         str(c.LogConfig),
		"logger_class":                      pyString(loggerClass),
		"logconfig_dict":                    pyJSON(c.LogConfigDict),
		"logconfig_json":                    str(c.LogConfigJSON),
		"loglevel":                          str(c.LogLevel),
		"max_requests":                      strconv.Itoa(c.MaxRequests),
		"max_requests_jitter":               strconv.Itoa(c.MaxRequestsJitter),
		"max_worker_memory":                 strconv.FormatInt(c.MaxWorkerMemory, 10),
		"metrics_bind":                      str(c.MetricsBind),
		"paste":                             str(c.Paste),
		"permit_obsolete_folding":           boolean(c.PermitObsoleteFolding),
		"pidfile":                           str(c.PidFile),
		"proc_name":                         str(c.Name),
		"proxy_allow_ips":                   commaList(c.ProxyAllowFrom),
		"proxy_protocol":                    str(c.ProxyProtocol),
		"python":                            str(c.Python),
		"pythonpath":                        str(strings.Join(c.PythonPath, ",")),
		"secure_scheme_headers":             pyJSON(schemeHeaders),
		"raw_env":                           list(c.Env),
		"raw_paste_global_conf":             list(c.PasteGlobal),
		"reload":                            boolean(c.Reload),
		"reload_extra_files":                list(c.ReloadExtraFiles),
		"reuse_port":                        boolean(c.ReusePort),
		"spew":                              boolean(c.Spew),
		"statsd_host":                       str(c.StatsdHost),
		"syslog":                            boolean(c.Syslog),
		"syslog_addr":                       str(syslogAddr),
		"syslog_facility":                   str(facility),
		"syslog_prefix":                     str(c.SyslogPrefix),
		"statsd_prefix":                     pyString(c.StatsdPrefix),
		"threads":                           strconv.Itoa(c.Threads),
		"timeout":                           secs(c.Timeout),
		"umask":                             strconv.Itoa(c.Umask),
		"user":                              id(c.UID, os.Geteuid()),
		"worker_class":                      pyString(workerClass),
		"worker_connections":                strconv.Itoa(c.WorkerConnections),
		"workers":                           strconv.Itoa(c.Workers),
		"wsgi_app":                          str(c.App),
	}
}

// pyJSON is a JSON object (--log-config-dict) in Python's notation, keys
// sorted; "{}" for none.
func pyJSON(text string) string {
	var v any = map[string]any{}
	if text != "" {
		json.Unmarshal([]byte(text), &v) // Finish has checked it
	}
	var b strings.Builder
	var write func(v any)
	write = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			keys := slices.Sorted(maps.Keys(v))
			b.WriteByte('{')
			for i, k := range keys {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(pyString(k))
				b.WriteString(": ")
				write(v[k])
			}
			b.WriteByte('}')
		case []any:
			b.WriteByte('[')
			for i, x := range v {
				if i > 0 {
					b.WriteString(", ")
				}
				write(x)
			}
			b.WriteByte(']')
		case string:
			b.WriteString(pyString(v))
		case float64:
			b.WriteString(strconv.FormatFloat(v, 'f', -1, 64))
		case bool:
			b.WriteString(map[bool]string{true: "True", false: "False"}[v])
		default:
			b.WriteString("None")
		}
	}
	write(v)
	return b.String()
}

// pyString is s as a Python string literal, in single quotes as repr()
// writes it.
func pyString(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range s {
		switch {
		case r == '\'' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < ' ' || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
	return b.String()
}
