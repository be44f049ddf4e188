{{/*
Chart name, truncated to the 63 characters a DNS label allows.
*/}}
{{- define "hami-mig.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, with the chart name added unless it already contains it.
*/}}
{{- define "hami-mig.fullname" -}}
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

{{- define "hami-mig.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels on every object.
*/}}
{{- define "hami-mig.labels" -}}
helm.sh/chart: {{ include "hami-mig.chart" . }}
{{ include "hami-mig.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: device-plugin
app.kubernetes.io/part-of: hami
{{- end }}

{{/*
Selector labels: stable across upgrades (a DaemonSet's selector is immutable).
*/}}
{{- define "hami-mig.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hami-mig.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hami-mig.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hami-mig.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hami-mig.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "hami-mig.deviceConfigName" -}}
{{- if .Values.deviceConfig.create }}
{{- printf "%s-device-config" (include "hami-mig.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- required "deviceConfig.existingConfigMap is required when deviceConfig.create is false" .Values.deviceConfig.existingConfigMap }}
{{- end }}
{{- end }}

{{- define "hami-mig.nodeConfigName" -}}
{{- if .Values.nodeConfig.create }}
{{- printf "%s-node-config" (include "hami-mig.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- required "nodeConfig.existingConfigMap is required when nodeConfig.create is false" .Values.nodeConfig.existingConfigMap }}
{{- end }}
{{- end }}

{{/*
The `nvidia:` section of HAMi's device-config.yaml, keys in HAMi's order, one geometry entry a line.
*/}}
{{- define "hami-mig.deviceConfigYaml" -}}
{{- $dc := .Values.deviceConfig -}}
nvidia:
  resourceCountName: {{ $dc.resourceCountName | toJson }}
  resourceMemoryName: {{ $dc.resourceMemoryName | toJson }}
  resourceMemoryPercentageName: {{ $dc.resourceMemoryPercentageName | toJson }}
  resourceCoreName: {{ $dc.resourceCoreName | toJson }}
  deviceSplitCount: {{ $dc.deviceSplitCount | int64 }}
  defaultMemory: {{ $dc.defaultMemory | int64 }}
  defaultCores: {{ $dc.defaultCores | int64 }}
  defaultGPUNum: {{ $dc.defaultGPUNum | int64 }}
  {{- with $dc.extra }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  knownMigGeometries:
  {{- range $dc.knownMigGeometries }}
  - models: {{ .models | toJson }}
    allowedGeometries:
    {{- range .allowedGeometries }}
    - [{{ range $i, $e := . }}{{ if $i }}, {{ end }}{name: {{ $e.name | toJson }}, memory: {{ $e.memory | int64 }}, count: {{ $e.count | int64 }}{{ if hasKey $e "core" }}, core: {{ $e.core | int64 }}{{ end }}}{{ end }}]
    {{- end }}
  {{- end }}
{{- end }}

{{/*
HAMi's node config.json: entries without operatingmode get nodeConfig.defaultMode.
*/}}
{{- define "hami-mig.nodeConfigJson" -}}
{{- $nodes := list }}
{{- range .Values.nodeConfig.nodes }}
{{- $entry := deepCopy . }}
{{- if not (hasKey $entry "operatingmode") }}
{{- $_ := set $entry "operatingmode" $.Values.nodeConfig.defaultMode }}
{{- end }}
{{- $nodes = append $nodes $entry }}
{{- end }}
{{- toPrettyJson (dict "nodeconfig" $nodes) }}
{{- end }}
