{{/* The chart name, or nameOverride. */}}
{{- define "whisperrooms.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, else the release name
when it already contains the chart name, else <release>-<chart>.
*/}}
{{- define "whisperrooms.fullname" -}}
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

{{/* The controller's object names. */}}
{{- define "whisperrooms.controller.fullname" -}}
{{- printf "%s-controller" (include "whisperrooms.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "whisperrooms.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the chart. */}}
{{- define "whisperrooms.labels" -}}
helm.sh/chart: {{ include "whisperrooms.chart" . }}
app.kubernetes.io/name: {{ include "whisperrooms.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: whisperrooms
{{- end }}

{{/* Labels of the controller's objects. */}}
{{- define "whisperrooms.controller.labels" -}}
{{ include "whisperrooms.labels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{/* Selects the controller's pods; never changes across upgrades. */}}
{{- define "whisperrooms.controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "whisperrooms.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "whisperrooms.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "whisperrooms.controller.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "whisperrooms.controller.image" -}}
{{- printf "%s:%s" .Values.controller.image.repository (.Values.controller.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "whisperrooms.gateway.image" -}}
{{- printf "%s:%s" .Values.gateway.image.repository (.Values.gateway.image.tag | default .Chart.AppVersion) }}
{{- end }}
