{{/* Names and labels. */}}
{{/* The release's name when it says mlflow already (helm install mlflow: mlflow-server,
     mlflow-nginx), else <release>-mlflow. */}}
{{- define "stack.fullname" -}}
{{- if contains "mlflow" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-mlflow" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "stack.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "server"). */}}
{{- define "stack.selectorLabels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "stack.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "stack.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "stack.serverService" -}}{{ include "stack.fullname" . }}-server{{- end -}}

{{- define "stack.mysqlHost" -}}
{{- if .Values.mysql.enabled -}}
{{ include "stack.fullname" . }}-mysql
{{- else -}}
{{ required "database.host is required (or mysql.enabled for an in-cluster MySQL)" .Values.database.host }}
{{- end -}}
{{- end -}}

{{- define "stack.s3Endpoint" -}}
{{- if .Values.minio.enabled -}}
http://{{ include "stack.fullname" . }}-minio:9000
{{- else -}}
{{ .Values.artifacts.s3EndpointUrl }}
{{- end -}}
{{- end -}}

{{- define "stack.artifactsDestination" -}}
{{- if and .Values.minio.enabled (not .Values.artifacts.destination) -}}
s3://{{ .Values.minio.bucket }}
{{- else -}}
{{ required "artifacts.destination (s3://bucket) is required (or minio.enabled)" .Values.artifacts.destination }}
{{- end -}}
{{- end -}}

{{- define "stack.bucket" -}}
{{- include "stack.artifactsDestination" . | trimPrefix "s3://" | splitList "/" | first -}}
{{- end -}}

{{/* When a hook runs: before install and before each upgrade, except on an in-cluster
     MySQL or MinIO (inCluster), which exist only once the release is installed: after
     install there. (dict "inCluster" bool) */}}
{{- define "stack.hookPhases" -}}
{{- if .inCluster -}}
post-install,pre-upgrade
{{- else -}}
pre-install,pre-upgrade
{{- end -}}
{{- end -}}

{{/* A database URL: the password is the env var MLFLOW_DB_PASSWORD, which the kubelet
     expands from the Secret at start ($(VAR)), so it is never in a manifest. */}}
{{- define "stack.dbUri" -}}
mysql+pymysql://{{ .ctx.Values.database.user }}:$(MLFLOW_DB_PASSWORD)@{{ .host | default (include "stack.mysqlHost" .ctx) }}:{{ .port | default .ctx.Values.database.port }}/{{ .db }}?charset=utf8mb4
{{- end -}}

{{/* serve.sh's default allowed hosts for the public host name, plus the names the
     cluster uses: the Service (gc job, port-forward) and the pod's own IP:5000 (Prometheus
     scrapes pod by pod; /health is exempt from the check, /metrics is not). */}}
{{- define "stack.allowedHosts" -}}
{{- $h := .Values.host -}}
{{- $svc := include "stack.serverService" . -}}
{{- $ns := .Release.Namespace -}}
{{- $list := list "localhost" "localhost:*" "127.0.0.1" "127.0.0.1:*" "[::1]" "[::1]:*" $h (printf "%s:*" $h) (printf "%s.local" $h) (printf "%s.local:*" $h) -}}
{{- range $name := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- $list = append $list (printf "%s:5000" $name) -}}
{{- end -}}
{{- $list = append $list "$(POD_IP):5000" -}}
{{- join "," $list -}}
{{- end -}}

{{/* The tracking server's environment, as compose sets it (docker-compose.yml and, when
     shared, docker-compose.share.yml). (dict "ctx" $ "upgrade" "0"|"1") */}}
{{- define "stack.serverEnv" -}}
{{- $v := .ctx.Values -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: MLFLOW_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.database.existingSecret }}
      key: {{ $v.database.passwordKey }}
- name: MLFLOW_BACKEND_STORE_URI
  value: {{ include "stack.dbUri" (dict "ctx" .ctx "db" $v.database.name) | quote }}
{{- with $v.database.readReplica.host }}
- name: MLFLOW_READ_REPLICA_BACKEND_STORE_URI
  value: {{ include "stack.dbUri" (dict "ctx" $.ctx "db" $v.database.name "host" . "port" $v.database.readReplica.port) | quote }}
{{- end }}
- name: MLFLOW_ARTIFACTS_DESTINATION
  value: {{ include "stack.artifactsDestination" .ctx | quote }}
{{- with include "stack.s3Endpoint" .ctx }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $v.artifacts.existingSecret }}
      key: {{ $v.artifacts.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.artifacts.existingSecret }}
      key: {{ $v.artifacts.secretAccessKeyKey }}
- name: MLFLOW_WORKERS
  value: {{ $v.server.workers | quote }}
- name: MLFLOW_SQLALCHEMYSTORE_POOL_SIZE
  value: {{ $v.server.sqlalchemyPoolSize | quote }}
- name: MLFLOW_DB_UPGRADE
  value: {{ .upgrade | quote }}
- name: MLFLOW_STACK_TRACKING_STORE
  value: {{ $v.server.trackingStore | quote }}
- name: MLFLOW_DISABLE_TELEMETRY
  value: {{ $v.server.disableTelemetry | toString | quote }}
- name: MLFLOW_LAN_HOSTNAME
  value: {{ $v.host | quote }}
- name: MLFLOW_SERVER_ALLOWED_HOSTS
  value: {{ include "stack.allowedHosts" .ctx | quote }}
{{- if $v.shared.enabled }}
- name: MLFLOW_AUTH_DATABASE_URI
  value: {{ include "stack.dbUri" (dict "ctx" .ctx "db" $v.shared.authDatabase) | quote }}
- name: MLFLOW_AUTH_ADMIN_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.shared.existingSecret }}
      key: {{ $v.shared.adminPasswordKey }}
- name: MLFLOW_FLASK_SERVER_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.shared.existingSecret }}
      key: {{ $v.shared.flaskSecretKeyKey }}
- name: MLFLOW_AUTH_CACHE_SECONDS
  value: {{ $v.shared.authCacheSeconds | quote }}
{{- end }}
- name: MLFLOW_METRICS
  value: {{ ternary "1" "0" $v.metrics.enabled | quote }}
{{- if or $v.shared.enabled $v.metrics.enabled }}
- name: MLFLOW_RUNTIME_DIR
  value: /run/mlflow
{{- end }}
{{- with $v.server.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* What serve.sh must write to with a read-only root: /tmp (mktemp, uvicorn), the home
     folder (MLflow's caches), and the runtime folder: in shared mode the auth config with
     the database password, with metrics a fresh metrics folder per start (~40 KB for two
     workers; serve.sh removes the one of the container's previous start): in memory, as
     compose's tmpfs. */}}
{{- define "stack.serverVolumes" -}}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
{{- if or .Values.shared.enabled .Values.metrics.enabled }}
- name: runtime
  emptyDir:
    medium: Memory
    sizeLimit: {{ ternary "16Mi" "1Mi" .Values.metrics.enabled }}
{{- end }}
{{- end -}}

{{- define "stack.serverVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/mlflow
{{- if or .Values.shared.enabled .Values.metrics.enabled }}
- name: runtime
  mountPath: /run/mlflow
{{- end }}
{{- end -}}

{{- define "stack.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "stack.containerSecurityContext" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end -}}

{{- define "stack.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{/* Checks that stop a wrong combination at render time, in one line. */}}
{{- define "stack.validate" -}}
{{- if and .Values.shared.enabled (not .Values.shared.tlsSecret) -}}
{{- fail "shared.enabled needs shared.tlsSecret: a kubernetes.io/tls Secret nginx serves (the shared site is HTTPS only)" -}}
{{- end -}}
{{- if and .Values.shared.enabled .Values.metrics.enabled .Values.metrics.serviceMonitor.enabled (not .Values.metrics.serviceMonitor.basicAuthSecret) -}}
{{- fail "shared mode with a ServiceMonitor needs metrics.serviceMonitor.basicAuthSecret: a Secret with the username and password of an MLflow admin (a shared server lets only admins read /metrics)" -}}
{{- end -}}
{{- if and .Values.gc.enabled (lt (int .Values.server.replicas) 1) -}}
{{- fail "gc needs the tracking server (server.replicas >= 1): it deletes artifacts through it" -}}
{{- end -}}
{{- end -}}
