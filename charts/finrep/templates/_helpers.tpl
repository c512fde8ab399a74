{{/* Names and labels shared by every template. */}}

{{- define "finrep.name" -}}finrep{{- end -}}

{{- define "finrep.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "finrep.labels" -}}
app.kubernetes.io/name: finrep
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "finrep.controllerSelector" -}}
app.kubernetes.io/name: finrep
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "finrep.postgresSelector" -}}
app.kubernetes.io/name: finrep
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: database
{{- end -}}

{{/* The prefix of the release's object names: the release name unless fullnameOverride is
set, cut so that "<prefix>-postgresql-0" stays a valid pod name and host name. */}}
{{- define "finrep.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 41 | trimSuffix "-" -}}
{{- end -}}

{{- define "finrep.controllerName" -}}{{ include "finrep.fullname" . }}-controller{{- end -}}
{{- define "finrep.postgresName" -}}{{ include "finrep.fullname" . }}-postgresql{{- end -}}

{{/* The restricted Pod Security Standard, for a pod running as `uid`. */}}
{{- define "finrep.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "finrep.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* DATABASE_URL from the database Secret. */}}
{{- define "finrep.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.urlKey }}
{{- end -}}

{{/* The URL of the in-cluster database, for Secrets the chart creates. */}}
{{- define "finrep.inClusterUrl" -}}
{{- /* urlquery is form encoding: every '+' it writes stands for a space (a '+' of the password
becomes %2B), and in a URL's userinfo a space must be %20. */ -}}
{{- printf "postgres://finrep:%s@%s.%s.svc:5432/finrep" (urlquery .Values.secrets.databasePassword | replace "+" "%20") (include "finrep.postgresName" .) .Release.Namespace -}}
{{- end -}}

{{/* The controller's rules on what lives in report namespaces: run Jobs and their plans,
Events, Secret metadata, and the removal of earlier versions' backup CronJobs. */}}
{{- define "finrep.controllerNamespacedRules" -}}
# get: an object under a run's name is checked for the report's owner reference before
# it is used or deleted (nothing is adopted by name).
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
# Only to remove the per-report backup CronJobs of earlier versions (owned ones).
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [get, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, delete]
# Metadata only: does the Secret a report names exist? Values are never read.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{- define "finrep.webName" -}}{{ include "finrep.fullname" . }}-web{{- end -}}

{{- define "finrep.webSelector" -}}
app.kubernetes.io/name: finrep
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: web
{{- end -}}

{{/* The URL recipients reach `finrep web` at: web.publicUrl, else the ingress host, else the
Service inside the cluster. */}}
{{- define "finrep.webUrl" -}}
{{- $w := .Values.web -}}
{{- if $w.publicUrl -}}
{{- trimSuffix "/" $w.publicUrl -}}
{{- else if and $w.ingress.enabled $w.ingress.host -}}
{{- printf "%s://%s" (ternary "https" "http" (ne $w.ingress.tlsSecretName "")) $w.ingress.host -}}
{{- else -}}
{{- printf "http://%s.%s.svc:8081" (include "finrep.webName" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* The unsubscribe signing key's Secret, or empty when links are not signed. */}}
{{- define "finrep.unsubscribeSecret" -}}
{{- .Values.unsubscribe.existingSecret | default (ternary "finrep-unsubscribe" "" (and .Values.secrets.create (ne .Values.secrets.unsubscribeKey ""))) -}}
{{- end -}}

{{/* The console password hash's Secret, or empty when the console is off. */}}
{{- define "finrep.webPasswordSecret" -}}
{{- .Values.web.console.existingSecret | default (ternary "finrep-web" "" (and .Values.secrets.create (ne .Values.secrets.webPasswordHash ""))) -}}
{{- end -}}

{{/* The editor's rules (kubectl finrep), per command. */}}
{{- define "finrep.editorRules" -}}
# status lists the reports, the Sources and Recipients they select; preview, test-send and
# run-now read a report and set its annotation; unblock does so on a Recipient.
- apiGroups: [finrep.io]
  resources: [dailyreports, recipients]
  verbs: [get, list, patch]
- apiGroups: [finrep.io]
  resources: [sources]
  verbs: [list]
# logs: the run's Job, its pods and their log.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# preview: the previewed copy, in the ConfigMap the report owns.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
# status: the reports' recent Warning Events.
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [list]
{{- end -}}
