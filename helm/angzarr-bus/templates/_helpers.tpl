{{/*
Names.
*/}}
{{- define "angzarr-bus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "angzarr-bus.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "angzarr-bus.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The bundled server's StatefulSet and client Service. */}}
{{- define "angzarr-bus.server.fullname" -}}
{{- printf "%s-server" (include "angzarr-bus.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "angzarr-bus.server.headless" -}}
{{- printf "%s-server-headless" (include "angzarr-bus.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "angzarr-bus.app.fullname" -}}
{{- printf "%s-app" (include "angzarr-bus.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "angzarr-bus.config.fullname" -}}
{{- printf "%s-config" (include "angzarr-bus.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels. Call with (dict "ctx" $ "component" "server").
*/}}
{{- define "angzarr-bus.labels" -}}
helm.sh/chart: {{ include "angzarr-bus.chart" .ctx }}
{{ include "angzarr-bus.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: angzarr-bus
{{- end }}

{{- define "angzarr-bus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "angzarr-bus.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/*
The chosen backend, checked: nats, memory or embedded.
*/}}
{{- define "angzarr-bus.backend" -}}
{{- $backend := .Values.bus.backend | toString -}}
{{- if not (has $backend (list "nats" "memory" "embedded")) -}}
{{- fail (printf "bus.backend must be one of nats, memory, embedded (got %q)" $backend) -}}
{{- end -}}
{{- $backend -}}
{{- end }}

{{/*
The existing NATS URL (bus.nats.url, trimmed), or empty.
*/}}
{{- define "angzarr-bus.nats.url" -}}
{{- .Values.bus.nats.url | default "" | toString | trim -}}
{{- end }}

{{/*
"true" when the bundled server is deployed: bus.backend nats, no bus.nats.url,
and bus.nats.enabled true. Empty otherwise (so `if` reads it as false).
A URL always wins: the values of the Angzarr documentation
(enabled: true with a url) use the NATS at that URL.
*/}}
{{- define "angzarr-bus.server.enabled" -}}
{{- if and (eq (include "angzarr-bus.backend" .) "nats") (not (include "angzarr-bus.nats.url" .)) .Values.bus.nats.enabled -}}
true
{{- end -}}
{{- end }}

{{/*
The URL the app connects to with backend nats: bus.nats.url when set (an
existing NATS; each seed checked), else the bundled server's client Service.
Empty for the other backends.
*/}}
{{- define "angzarr-bus.natsUrl" -}}
{{- $url := include "angzarr-bus.nats.url" . -}}
{{- if eq (include "angzarr-bus.backend" .) "nats" -}}
{{- if $url -}}
{{- range splitList "," $url -}}
{{- $seed := trim . -}}
{{- if not (regexMatch "^(nats|tls|ws|wss)://[^\\s]+$" $seed) -}}
{{- fail (printf "bus.nats.url: %q is not a nats://, tls://, ws:// or wss:// URL (set bus.nats.url to the existing NATS server's URL, or to \"\" for the bundled server)" $seed) -}}
{{- end -}}
{{- end -}}
{{- $url -}}
{{- else if include "angzarr-bus.server.enabled" . -}}
{{- printf "nats://%s.%s.svc:%d" (include "angzarr-bus.server.fullname" .) .Release.Namespace (int .Values.server.clientPort) -}}
{{- else -}}
{{- fail "bus.nats.url is required when bus.backend is nats and bus.nats.enabled is false: set bus.nats.url to the existing NATS server's URL, or set bus.nats.enabled=true (with no url) to deploy the bundled server" -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
Checks combinations of values that cannot be honoured, failing with a message
that names the values to change. Renders nothing. Included by the bus
ConfigMap, which every release renders.
*/}}
{{- define "angzarr-bus.validate" -}}
{{- $backend := include "angzarr-bus.backend" . -}}
{{- $server := include "angzarr-bus.server.enabled" . -}}
{{- $url := include "angzarr-bus.nats.url" . -}}
{{- if and $url (ne $backend "nats") -}}
{{- fail (printf "bus.nats.url is set but bus.backend is %s, which does not use it: set bus.backend=nats to use the NATS at %s, or remove bus.nats.url" $backend $url) -}}
{{- end -}}
{{- if eq $backend "nats" -}}
{{- $_ := include "angzarr-bus.natsUrl" . -}}
{{- end -}}
{{- if and $server .Values.bus.nats.jetstream (not .Values.server.jetstream) -}}
{{- fail "bus.nats.jetstream is true but the bundled server runs without JetStream (server.jetstream: false): set server.jetstream=true, or bus.nats.jetstream=false for core NATS" -}}
{{- end -}}
{{- if and (or $server (eq $backend "embedded")) (gt (int64 .Values.bus.stream.replicas) 1) -}}
{{- fail (printf "bus.stream.replicas is %d but the %s server is a single node (it refuses replicas > 1): set bus.stream.replicas=1, or use a NATS cluster with bus.backend=nats and bus.nats.url" (int64 .Values.bus.stream.replicas) (ternary "bundled" "embedded" (not (eq $backend "embedded")))) -}}
{{- end -}}
{{- if and $server .Values.server.websocket.enabled (not .Values.server.websocket.noTls) (not (include "angzarr-bus.tls.enabled" .)) -}}
{{- fail "server.websocket.enabled needs TLS for wss:// (bus.nats.tls.existingSecret), or server.websocket.noTls=true for plain ws:// (the server refuses a websocket listener with neither)" -}}
{{- end -}}
{{- if and $server .Values.server.websocket.enabled (eq (int64 .Values.server.websocket.port) (int64 .Values.server.clientPort)) -}}
{{- fail "server.websocket.port is the same as server.clientPort: give the WebSocket listener its own port" -}}
{{- end -}}
{{- if and $server .Values.server.websocket.enabled (eq (int64 .Values.server.websocket.port) (int64 .Values.server.monitorPort)) -}}
{{- fail "server.websocket.port is the same as server.monitorPort: give the WebSocket listener its own port" -}}
{{- end -}}
{{- $op := .Values.server.operator | default dict -}}
{{- if and $op.existingSecret (not $server) -}}
{{- fail "server.operator.existingSecret is set but the bundled server is not deployed (it needs bus.backend=nats with no bus.nats.url): remove server.operator.existingSecret, or deploy the bundled server" -}}
{{- end -}}
{{- if and $server (not $op.existingSecret) (or $op.systemAccount $op.preload) -}}
{{- fail "server.operator.systemAccount / server.operator.preload are set but operator mode is off: set server.operator.existingSecret to the Secret holding the operator JWT, or remove them" -}}
{{- end -}}
{{- if include "angzarr-bus.operator.enabled" . -}}
{{- $type := include "angzarr-bus.auth.type" . -}}
{{- if not $type -}}
{{- fail "server.operator.existingSecret turns on JWT authentication, so the app needs a user's .creds file: set bus.nats.auth.existingSecret and bus.nats.auth.type=creds" -}}
{{- else if ne $type "creds" -}}
{{- fail (printf "bus.nats.auth.type is %s but the bundled server runs in operator mode (server.operator.existingSecret), where users authenticate with JWTs: set bus.nats.auth.type=creds with a .creds file in bus.nats.auth.existingSecret" $type) -}}
{{- end -}}
{{- end -}}
{{- if and $server .Values.server.mqtt.enabled (not .Values.server.jetstream) -}}
{{- fail "server.mqtt.enabled needs server.jetstream=true (the server, like nats-server, refuses an MQTT listener without JetStream)" -}}
{{- end -}}
{{- if and $server .Values.server.mqtt.enabled .Values.server.mqtt.tls (not (include "angzarr-bus.tls.enabled" .)) -}}
{{- fail "server.mqtt.tls needs the server certificate (bus.nats.tls.existingSecret): set it, or server.mqtt.tls=false for plain MQTT" -}}
{{- end -}}
{{- if and $server .Values.server.mqtt.enabled (or (eq (int64 .Values.server.mqtt.port) (int64 .Values.server.clientPort)) (eq (int64 .Values.server.mqtt.port) (int64 .Values.server.monitorPort)) (and .Values.server.websocket.enabled (eq (int64 .Values.server.mqtt.port) (int64 .Values.server.websocket.port)))) -}}
{{- fail "server.mqtt.port is the same as server.clientPort, server.monitorPort or server.websocket.port: give the MQTT listener its own port" -}}
{{- end -}}
{{- $sm := .Values.serviceMonitor | default dict -}}
{{- if and $sm.enabled (not $server) -}}
{{- fail (include "angzarr-bus.monitoring.noServer" (dict "ctx" . "what" "serviceMonitor.enabled")) -}}
{{- end -}}
{{- if and $sm.enabled $sm.interval $sm.scrapeTimeout -}}
{{- if gt (int64 (include "angzarr-bus.durationMs" $sm.scrapeTimeout)) (int64 (include "angzarr-bus.durationMs" $sm.interval)) -}}
{{- fail (printf "serviceMonitor.scrapeTimeout (%s) is longer than serviceMonitor.interval (%s), which Prometheus refuses: shorten serviceMonitor.scrapeTimeout or lengthen serviceMonitor.interval" $sm.scrapeTimeout $sm.interval) -}}
{{- end -}}
{{- end -}}
{{- $gd := .Values.grafanaDashboard | default dict -}}
{{- if and $gd.enabled (not $server) -}}
{{- fail (include "angzarr-bus.monitoring.noServer" (dict "ctx" . "what" "grafanaDashboard.enabled")) -}}
{{- end -}}
{{- end }}

{{/*
Why serviceMonitor / grafanaDashboard need the bundled server. Call with
(dict "ctx" $ "what" "serviceMonitor.enabled").
*/}}
{{- define "angzarr-bus.monitoring.noServer" -}}
{{- $backend := include "angzarr-bus.backend" .ctx -}}
{{- $why := "" -}}
{{- if ne $backend "nats" -}}
{{- $why = printf "bus.backend is %s" $backend -}}
{{- else if include "angzarr-bus.nats.url" .ctx -}}
{{- $why = "bus.nats.url is set (an existing NATS)" -}}
{{- else -}}
{{- $why = "bus.nats.enabled is false" -}}
{{- end -}}
{{- printf "%s needs the bundled server (its /metrics on the monitoring port), which this release does not deploy because %s: set %s=false, or deploy the bundled server (bus.backend=nats, bus.nats.enabled=true, no bus.nats.url)" .what $why .what -}}
{{- end }}

{{/*
A Prometheus duration ("30s", "1m30s", "500ms", "1h", "2d", "1w", "1y") in
milliseconds. Call with the string.
*/}}
{{- define "angzarr-bus.durationMs" -}}
{{- $per := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 "w" 604800000 "y" 31536000000 -}}
{{- $ms := 0 -}}
{{- range regexFindAll "[0-9]+(ms|y|w|d|h|m|s)" (toString .) -1 -}}
{{- $n := regexFind "^[0-9]+" . | int64 -}}
{{- $unit := regexReplaceAll "^[0-9]+" . "" -}}
{{- $ms = add $ms (mul $n (get $per $unit)) -}}
{{- end -}}
{{- $ms -}}
{{- end }}

{{/*
Image reference. Call with (dict "image" .Values.server.image "ctx" $).
*/}}
{{- define "angzarr-bus.image" -}}
{{- printf "%s:%s" .image.repository (toString (default .ctx.Chart.AppVersion .image.tag)) -}}
{{- end }}

{{/*
Resource presets: requests and limits by size. Call with
(dict "preset" .Values.server.resourcesPreset "resources" .Values.server.resources "what" "server").
Explicit resources win; "none" renders nothing.
*/}}
{{- define "angzarr-bus.resources" -}}
{{- $presets := dict
  "nano"    (dict "requests" (dict "cpu" "100m" "memory" "128Mi")  "limits" (dict "cpu" "150m" "memory" "192Mi"))
  "micro"   (dict "requests" (dict "cpu" "250m" "memory" "256Mi")  "limits" (dict "cpu" "375m" "memory" "384Mi"))
  "small"   (dict "requests" (dict "cpu" "500m" "memory" "512Mi")  "limits" (dict "cpu" "750m" "memory" "768Mi"))
  "medium"  (dict "requests" (dict "cpu" "500m" "memory" "1024Mi") "limits" (dict "cpu" "750m" "memory" "1536Mi"))
  "large"   (dict "requests" (dict "cpu" "1"    "memory" "2048Mi") "limits" (dict "cpu" "1500m" "memory" "3072Mi"))
  "xlarge"  (dict "requests" (dict "cpu" "1"    "memory" "3072Mi") "limits" (dict "cpu" "3"    "memory" "6144Mi"))
  "2xlarge" (dict "requests" (dict "cpu" "1"    "memory" "3072Mi") "limits" (dict "cpu" "6"    "memory" "12288Mi"))
-}}
{{- if .resources -}}
{{- toYaml .resources -}}
{{- else -}}
{{- $preset := .preset | toString -}}
{{- if hasKey $presets $preset -}}
{{- toYaml (get $presets $preset) -}}
{{- else if ne $preset "none" -}}
{{- fail (printf "%s.resourcesPreset must be one of nano, micro, small, medium, large, xlarge, 2xlarge, none (got %q)" .what $preset) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
The bus.nats.auth method in use: "password", "token" or "creds" when
bus.backend is nats and bus.nats.auth.existingSecret is set; empty otherwise.
Fails on an unknown type, and on "creds" with the bundled server (it has no
decentralized JWT authentication).
*/}}
{{- define "angzarr-bus.auth.type" -}}
{{- $auth := .Values.bus.nats.auth | default dict -}}
{{- if and (eq (include "angzarr-bus.backend" .) "nats") $auth.existingSecret -}}
{{- $type := $auth.type | default "password" | toString -}}
{{- if not (has $type (list "password" "token" "creds")) -}}
{{- fail (printf "bus.nats.auth.type must be password, token or creds (got %q)" $type) -}}
{{- end -}}
{{- if and (eq $type "creds") (include "angzarr-bus.server.enabled" .) (not (.Values.server.operator | default dict).existingSecret) -}}
{{- fail "bus.nats.auth.type creds with the bundled server needs operator mode: set server.operator.existingSecret to the Secret holding the operator JWT (or use password or token)" -}}
{{- end -}}
{{- $type -}}
{{- end -}}
{{- end }}

{{/*
"true" when the bundled server runs in operator mode (JWT authentication):
the server is deployed and server.operator.existingSecret is set.
*/}}
{{- define "angzarr-bus.operator.enabled" -}}
{{- if and (include "angzarr-bus.server.enabled" .) (.Values.server.operator | default dict).existingSecret -}}
true
{{- end -}}
{{- end }}

{{/*
"true" when the bundled server reads a configuration file (-c): for
bus.nats.auth (its authorization block, or operator mode),
server.websocket.enabled (its websocket block) or server.mqtt.enabled (its
mqtt block).
*/}}
{{- define "angzarr-bus.server.configFile" -}}
{{- if and (include "angzarr-bus.server.enabled" .) (or (include "angzarr-bus.auth.type" .) .Values.server.websocket.enabled .Values.server.mqtt.enabled (include "angzarr-bus.operator.enabled" .)) -}}
true
{{- end -}}
{{- end }}

{{/*
"true" when TLS from bus.nats.tls.existingSecret applies (backend nats).
*/}}
{{- define "angzarr-bus.tls.enabled" -}}
{{- $tls := .Values.bus.nats.tls | default dict -}}
{{- if and (eq (include "angzarr-bus.backend" .) "nats") $tls.existingSecret -}}
true
{{- end -}}
{{- end }}

{{/*
env entries taking the credentials from bus.nats.auth.existingSecret
(NATS_USER + NATS_PASSWORD, or NATS_TOKEN); the same names in the app and
in the bundled server (whose config file reads $NATS_USER / $NATS_PASSWORD /
$NATS_TOKEN). Nothing for creds (a mounted file) or without auth.
*/}}
{{- define "angzarr-bus.auth.env" -}}
{{- $type := include "angzarr-bus.auth.type" . -}}
{{- $auth := .Values.bus.nats.auth -}}
{{- if eq $type "password" }}
- name: NATS_USER
  valueFrom:
    secretKeyRef:
      name: {{ $auth.existingSecret | toString | quote }}
      key: {{ $auth.userKey | default "user" | toString | quote }}
- name: NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $auth.existingSecret | toString | quote }}
      key: {{ $auth.passwordKey | default "password" | toString | quote }}
{{- else if eq $type "token" }}
- name: NATS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $auth.existingSecret | toString | quote }}
      key: {{ $auth.tokenKey | default "token" | toString | quote }}
{{- end }}
{{- end }}

{{/*
A secret volume with the TLS files of bus.nats.tls.existingSecret under the
fixed names ca.crt, tls.crt, tls.key. Call with (dict "ctx" $ "name" "nats-tls").
*/}}
{{- define "angzarr-bus.tls.volume" -}}
{{- $tls := .ctx.Values.bus.nats.tls -}}
- name: {{ .name }}
  secret:
    secretName: {{ $tls.existingSecret | toString | quote }}
    defaultMode: 288
    items:
      - key: {{ $tls.caKey | default "ca.crt" | toString | quote }}
        path: ca.crt
      - key: {{ $tls.certKey | default "tls.crt" | toString | quote }}
        path: tls.crt
      - key: {{ $tls.keyKey | default "tls.key" | toString | quote }}
        path: tls.key
{{- end }}

{{/* The Grafana dashboard's ConfigMap. */}}
{{- define "angzarr-bus.dashboard.fullname" -}}
{{- printf "%s-dashboard" (include "angzarr-bus.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The bundled server's configuration file ConfigMap. */}}
{{- define "angzarr-bus.serverConfig.fullname" -}}
{{- printf "%s-server-config" (include "angzarr-bus.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
