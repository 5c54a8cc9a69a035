{{/* Object names: the release name (or fullnameOverride), so cluster-scoped names are
     unique per release. */}}
{{- define "qmo.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "qmo.operatorName" -}}
{{- printf "%s-operator" (include "qmo.fullname" .) -}}
{{- end -}}

{{- define "qmo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "qmo.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "qmo.leaseName" -}}
{{- default (include "qmo.operatorName" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{- define "qmo.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "qmo.builderImage" -}}
{{- default (printf "ghcr.io/qmo-dev/qmo-builder:%s" .Chart.AppVersion) .Values.builderImage -}}
{{- end -}}

{{/* The image of eval Jobs: qmo-eval with lm-evaluation-harness (no GPU stack). */}}
{{- define "qmo.evaluatorImage" -}}
{{- default (printf "ghcr.io/qmo-dev/qmo-evaluator:%s" .Chart.AppVersion) .Values.evaluatorImage -}}
{{- end -}}

{{- define "qmo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "qmo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "qmo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "qmo.commonLabels" -}}
app.kubernetes.io/name: {{ include "qmo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: qmo
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "qmo.labels" -}}
{{ include "qmo.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The namespaced rules: exactly what qmo does inside a watched namespace (see docs/rbac.md).
     Reads are list + watch (the operator's informers; it makes no GET); writes are server-side
     apply (patch, plus create when the apply creates the object) and a few deletes.
     Used by the ClusterRole (all namespaces) or by one Role per watched namespace. */}}
{{- define "qmo.namespacedRules" -}}
- apiGroups: [qmo.dev]
  resources: [quantizedmodels, qualityreports]
  verbs: [list, watch]
- apiGroups: [qmo.dev]
  resources: [qualityreports]
  verbs: [create, patch]
- apiGroups: [qmo.dev]
  resources: [quantizedmodels/status, qualityreports/status]
  verbs: [patch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [configmaps, persistentvolumeclaims]
  verbs: [list, watch, create, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, watch, create, patch]
{{- end -}}

{{/* Cluster-scoped reads, needed in both modes. */}}
{{- define "qmo.clusterRules" -}}
- apiGroups: [""]
  resources: [nodes]
  verbs: [list, watch]
{{- if .Values.metrics.auth.enabled }}
- apiGroups: [authentication.k8s.io]
  resources: [tokenreviews]
  verbs: [create]
- apiGroups: [authorization.k8s.io]
  resources: [subjectaccessreviews]
  verbs: [create]
{{- end }}
{{- end -}}
