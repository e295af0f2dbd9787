{{/*
Helpers of the authtrail chart. Rendered by Helm itself (CI: Helm's Go engine through the
pinned helm-python-sdk wheel, scripts/helm-render.py), so any Helm/Sprig function may be used.
*/}}

{{- define "authtrail.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "authtrail.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "authtrail.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "authtrail.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authtrail.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "authtrail.labels" -}}
helm.sh/chart: {{ include "authtrail.chart" . }}
{{ include "authtrail.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: authtrail
{{- end -}}

{{/* The labels of the pods authtrail runs in: the chart's own (standalone) or yours (sidecar). */}}
{{- define "authtrail.podSelector" -}}
{{- if eq .Values.mode "sidecar" -}}
{{- toYaml .Values.sidecar.podSelector -}}
{{- else -}}
{{- include "authtrail.selectorLabels" . -}}
{{- end -}}
{{- end -}}

{{- define "authtrail.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "authtrail.fullname" .) -}}
{{- end -}}

{{- define "authtrail.image" -}}
{{- $i := .Values.image -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $i.repository $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $i.repository ($i.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* NAME -> NAME upper-cased with `-` as `_`, for environment variable names. */}}
{{- define "authtrail.envSuffix" -}}
{{- . | replace "-" "_" | upper -}}
{{- end -}}

{{- define "authtrail.adminTokenVar" -}}
{{- printf "AUTHTRAIL_ADMIN_TOKEN_SHA256_%s" (include "authtrail.envSuffix" .) -}}
{{- end -}}

{{- define "authtrail.jwtSecretVar" -}}
{{- printf "AUTHTRAIL_JWT_SECRET_%s" (include "authtrail.envSuffix" .) -}}
{{- end -}}

{{/* Refuse values that would render a pod that cannot work. Included by configmap.yaml. */}}
{{- define "authtrail.validate" -}}
{{- $v := .Values -}}
{{- if not (has $v.mode (list "standalone" "sidecar")) -}}
{{- fail (printf "mode: %q is neither standalone nor sidecar" $v.mode) -}}
{{- end -}}
{{- if and (eq $v.mode "sidecar") (empty $v.sidecar.podSelector) -}}
{{- fail "sidecar.podSelector is required in sidecar mode: the labels of your auth server's pods" -}}
{{- end -}}
{{- $p := $v.persistence -}}
{{- if not (has $p.type (list "emptyDir" "pvc" "existingClaim")) -}}
{{- fail (printf "persistence.type: %q is none of emptyDir, pvc, existingClaim" $p.type) -}}
{{- end -}}
{{- if eq ($p.medium | default "" | lower) "memory" -}}
{{- fail "persistence.medium: Memory would put the spool (authtrail's write-ahead log) on a tmpfs; it must be a real disk" -}}
{{- end -}}
{{- if and (ne $p.type "emptyDir") (gt (int $v.replicaCount) 1) -}}
{{- fail "persistence: one claim for several replicas would share one spool and instance id; keep replicaCount 1, or use emptyDir with the PostgreSQL store" -}}
{{- end -}}
{{- if and (eq $p.type "existingClaim") (not $p.existingClaim) -}}
{{- fail "persistence.existingClaim: the claim's name is required with persistence.type existingClaim" -}}
{{- end -}}
{{- range $k := list "proxyName" "adminName" -}}
{{- $n := index $v.ports $k -}}
{{- if not (regexMatch "^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$" $n) -}}
{{- fail (printf "ports.%s: %q is not a port name (at most 15 of a-z 0-9 -)" $k $n) -}}
{{- end -}}
{{- end -}}
{{- range $v.adminCredentials -}}
{{- if not (regexMatch "^[A-Za-z][A-Za-z0-9_-]*$" (.name | default "")) -}}
{{- fail (printf "adminCredentials: name %q must start with a letter and hold only letters, digits, - and _" (.name | default "")) -}}
{{- end -}}
{{- end -}}
{{- range $name, $_ := $v.config.hmacKeySets -}}
{{- if not (regexMatch "^[A-Za-z][A-Za-z0-9_-]*$" $name) -}}
{{- fail (printf "config.hmacKeySets: name %q must start with a letter and hold only letters, digits, - and _" $name) -}}
{{- end -}}
{{- end -}}
{{- with $v.secrets.checkpointKey -}}
{{- if not (regexMatch "^[0-9a-fA-F]{64}$" .) -}}
{{- fail "secrets.checkpointKey: 64 hex characters (the signing_key `authtrail keygen` prints)" -}}
{{- end -}}
{{- end -}}
{{- with $v.secrets.fingerprintKey -}}
{{- if lt (len .) 16 -}}
{{- fail "secrets.fingerprintKey: at least 16 bytes" -}}
{{- end -}}
{{- end -}}
{{- range $name, $sha := $v.secrets.adminTokenSha256 -}}
{{- if not (regexMatch "^[0-9a-fA-F]{64}$" $sha) -}}
{{- fail (printf "secrets.adminTokenSha256.%s: the SHA-256 of the token, 64 hex characters (never the token)" $name) -}}
{{- end -}}
{{- end -}}
{{- if and $v.config.store.urlFromSecret (not $v.secrets.existingSecret) (not $v.secrets.storeUrl) -}}
{{- fail "secrets.storeUrl is required with config.store.urlFromSecret (or set secrets.existingSecret)" -}}
{{- end -}}
{{- end -}}

{{/*
authtrail.yaml as a dict: the preset's map (if any), then what these values set, then
config.extra deep-merged over it.
*/}}
{{- define "authtrail.configDict" -}}
{{- $v := .Values -}}
{{- $c := $v.config -}}
{{- $cfg := dict -}}
{{- $presetRoutes := list -}}
{{- if $c.preset -}}
{{- $text := .Files.Get (printf "presets/%s.yaml" $c.preset) -}}
{{- if not $text -}}
{{- $names := list -}}
{{- range $path, $_ := .Files.Glob "presets/*.yaml" -}}
{{- $names = append $names ($path | base | trimSuffix ".yaml") -}}
{{- end -}}
{{- fail (printf "config.preset: no preset %q; the presets are %s" $c.preset (join ", " $names)) -}}
{{- end -}}
{{- $cfg = fromYaml $text -}}
{{- if hasKey $cfg "Error" -}}
{{- fail (printf "presets/%s.yaml: %s" $c.preset $cfg.Error) -}}
{{- end -}}
{{- $presetRoutes = $cfg.routes | default list -}}
{{- end -}}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int $v.ports.proxy)) -}}
{{- $_ := set $cfg "upstream" (required "config.upstream is required: the auth server authtrail fronts" $c.upstream) -}}
{{- $routes := concat ($c.routes | default list) $presetRoutes -}}
{{- if $routes -}}
{{- $_ := set $cfg "routes" $routes -}}
{{- else -}}
{{- $_ := unset $cfg "routes" -}}
{{- end -}}
{{- /* admin */ -}}
{{- $creds := list -}}
{{- range $v.adminCredentials -}}
{{- $creds = append $creds (dict "name" .name "token_sha256" (printf "${%s}" (include "authtrail.adminTokenVar" .name)) "apps" (.apps | default (list "*")) "permissions" (.permissions | default (list "read"))) -}}
{{- end -}}
{{- $_ := set $cfg "admin" (dict "listen" (printf "0.0.0.0:%d" (int $v.ports.admin)) "credentials" $creds) -}}
{{- /* store */ -}}
{{- $store := deepCopy ($c.store.extra | default dict) -}}
{{- $_ := set $store "url" (ternary "${AUTHTRAIL_STORE_URL}" $c.store.url (eq (toString $c.store.urlFromSecret) "true")) -}}
{{- $spool := deepCopy ($store.spool | default dict) -}}
{{- $_ := set $spool "dir" $c.store.spoolDir -}}
{{- $_ := set $store "spool" $spool -}}
{{- if $c.checkpoints.enabled -}}
{{- $cp := deepCopy ($store.checkpoint | default dict) -}}
{{- $_ := set $cp "signing_key" "${AUTHTRAIL_CHECKPOINT_KEY}" -}}
{{- with $c.checkpoints.publicKey -}}
{{- $_ := set $cp "public_key" . -}}
{{- end -}}
{{- $_ := set $store "checkpoint" $cp -}}
{{- end -}}
{{- $_ := set $cfg "store" $store -}}
{{- /* trust */ -}}
{{- $trust := $cfg.trust | default dict -}}
{{- if $c.fingerprintTokens -}}
{{- $_ := set $trust "fingerprint_key" "${AUTHTRAIL_FINGERPRINT_KEY}" -}}
{{- else -}}
{{- $_ := unset $trust "fingerprint_key" -}}
{{- end -}}
{{- if $trust -}}
{{- $_ := set $cfg "trust" $trust -}}
{{- else -}}
{{- $_ := unset $cfg "trust" -}}
{{- end -}}
{{- /* HMAC key sets */ -}}
{{- if $c.hmacKeySets -}}
{{- $keys := $cfg.keys | default dict -}}
{{- range $name, $opts := $c.hmacKeySets -}}
{{- $ks := deepCopy ($opts | default dict) -}}
{{- $_ := set $ks "secret" (printf "${%s}" (include "authtrail.jwtSecretVar" $name)) -}}
{{- $_ := set $keys $name $ks -}}
{{- end -}}
{{- $_ := set $cfg "keys" $keys -}}
{{- end -}}
{{- /* the rest */ -}}
{{- $_ := set $cfg "timeouts" (mergeOverwrite ($cfg.timeouts | default dict) (deepCopy ($c.timeouts | default dict))) -}}
{{- with $c.retention -}}
{{- $_ := set $cfg "retention" (deepCopy .) -}}
{{- end -}}
{{- with $c.sinks -}}
{{- $_ := set $cfg "sinks" (deepCopy .) -}}
{{- end -}}
{{- with $c.alerts -}}
{{- $_ := set $cfg "alerts" (deepCopy .) -}}
{{- end -}}
{{- $cfg = mergeOverwrite $cfg (deepCopy ($c.extra | default dict)) -}}
{{- toJson $cfg -}}
{{- end -}}

{{- define "authtrail.configYaml" -}}
{{- include "authtrail.configDict" . | fromJson | toYaml -}}
{{- end -}}

{{/*
One env entry per `${VAR}` the rendered authtrail.yaml reads: a secretKeyRef to the Secret's
key of that name, `optional` only when every use has a `:-default`. Names set in extraEnv are
left to it. (`$${VAR}`, a literal, is not told apart: avoid it in values.)
*/}}
{{- define "authtrail.secretEnv" -}}
{{- $text := include "authtrail.configYaml" . -}}
{{- $plain := dict -}}
{{- range .Values.extraEnv -}}
{{- $_ := set $plain .name true -}}
{{- end -}}
{{- $vars := dict -}}
{{- range regexFindAll "\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}" $text -1 -}}
{{- $name := regexReplaceAll "^\\$\\{([A-Za-z_][A-Za-z0-9_]*).*$" . "${1}" -}}
{{- $optional := contains ":-" . -}}
{{- if hasKey $vars $name -}}
{{- $optional = and $optional (get $vars $name) -}}
{{- end -}}
{{- $_ := set $vars $name $optional -}}
{{- end -}}
{{- range $name := keys $vars | sortAlpha -}}
{{- if not (hasKey $plain $name) }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "authtrail.secretName" $ }}
      key: {{ $name }}
      {{- if get $vars $name }}
      optional: true
      {{- end }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The pod template's annotations: the config checksum and the scrape hints. */}}
{{- define "authtrail.podAnnotations" -}}
{{- $a := deepCopy (.Values.podAnnotations | default dict) -}}
{{- if .Values.rollOnConfigChange -}}
{{- $_ := set $a "checksum/authtrail-config" (include "authtrail.configYaml" . | sha256sum) -}}
{{- if not .Values.secrets.existingSecret -}}
{{- $_ := set $a "checksum/authtrail-secret" (toJson .Values.secrets | sha256sum) -}}
{{- end -}}
{{- end -}}
{{- /* Not on your pods in sidecar mode: they may carry scrape hints for your server. */ -}}
{{- if and .Values.adminService.prometheusAnnotations (eq .Values.mode "standalone") -}}
{{- $_ := set $a "prometheus.io/scrape" "true" -}}
{{- $_ := set $a "prometheus.io/port" (toString .Values.ports.admin) -}}
{{- $_ := set $a "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- toYaml $a -}}
{{- end -}}

{{/* The authtrail container (a list item's mapping). */}}
{{- define "authtrail.container" -}}
{{- $v := .Values -}}
name: authtrail
image: {{ include "authtrail.image" . | quote }}
imagePullPolicy: {{ $v.image.pullPolicy }}
{{- if $v.nativeSidecar }}
# A native sidecar: started before the main containers, stopped after them.
restartPolicy: Always
{{- end }}
args: [serve, --config, /etc/authtrail/authtrail.yaml]
env:
  - name: AUTHTRAIL_LOG_FORMAT
    value: json
{{- include "authtrail.secretEnv" . | replace "\n" "\n  " }}
{{- with $v.extraEnv }}
{{ toYaml . | indent 2 }}
{{- end }}
ports:
  - name: {{ $v.ports.proxyName }}
    containerPort: {{ $v.ports.proxy }}
    protocol: TCP
  - name: {{ $v.ports.adminName }}
    containerPort: {{ $v.ports.admin }}
    protocol: TCP
# Probes name the admin port this container declares (kubelet resolves a named probe port in
# the probed container only).
startupProbe:
  httpGet: { path: {{ $v.probes.startup.path }}, port: {{ $v.ports.adminName }} }
  periodSeconds: {{ $v.probes.startup.periodSeconds }}
  failureThreshold: {{ $v.probes.startup.failureThreshold }}
livenessProbe:
  httpGet: { path: {{ $v.probes.liveness.path }}, port: {{ $v.ports.adminName }} }
  periodSeconds: {{ $v.probes.liveness.periodSeconds }}
  failureThreshold: {{ $v.probes.liveness.failureThreshold }}
readinessProbe:
  httpGet: { path: {{ $v.probes.readiness.path }}, port: {{ $v.ports.adminName }} }
  periodSeconds: {{ $v.probes.readiness.periodSeconds }}
  failureThreshold: {{ $v.probes.readiness.failureThreshold }}
{{- if and (not $v.nativeSidecar) (gt (int $v.preStopSleepSeconds) 0) }}
lifecycle:
  # Time for the endpoints to leave the Services before SIGTERM.
  preStop: { sleep: { seconds: {{ int $v.preStopSleepSeconds }} } }
{{- end }}
resources:
  {{- toYaml $v.resources | nindent 2 }}
securityContext:
  {{- toYaml $v.securityContext | nindent 2 }}
volumeMounts:
  - { name: authtrail-config, mountPath: /etc/authtrail, readOnly: true }
  - { name: authtrail-data, mountPath: /var/lib/authtrail }
  - { name: authtrail-tmp, mountPath: /tmp }
{{- end -}}

{{/* The volumes the authtrail container mounts (list items). */}}
{{- define "authtrail.volumes" -}}
{{- $p := .Values.persistence -}}
- name: authtrail-config
  configMap:
    name: {{ include "authtrail.fullname" . }}
# The SQLite file and the spool (the write-ahead log): a real disk, kept across container
# restarts; see persistence in values.yaml.
- name: authtrail-data
{{- if eq $p.type "pvc" }}
  persistentVolumeClaim:
    claimName: {{ include "authtrail.fullname" . }}-data
{{- else if eq $p.type "existingClaim" }}
  persistentVolumeClaim:
    claimName: {{ $p.existingClaim }}
{{- else }}
  emptyDir:
    {{- with $p.medium }}
    medium: {{ . }}
    {{- end }}
    sizeLimit: {{ $p.sizeLimit }}
{{- end }}
# SQLite's temporary files: the root filesystem is read-only.
- name: authtrail-tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}
