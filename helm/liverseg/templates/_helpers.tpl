{{/*
Names, labels and the pieces every role's pod shares.
*/}}

{{- define "liverseg.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "liverseg.fullname" -}}
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

{{- define "liverseg.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "liverseg.labels" -}}
helm.sh/chart: {{ include "liverseg.chart" . }}
{{ include "liverseg.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: liverseg
{{- end -}}

{{/* Selects every liverseg pod of the release, whatever its role. */}}
{{- define "liverseg.selectorLabels" -}}
app.kubernetes.io/name: {{ include "liverseg.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one role's objects; call with (dict "root" $ "role" "worker"). */}}
{{- define "liverseg.roleLabels" -}}
{{ include "liverseg.labels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{/* Selects one role's pods; call with (dict "root" $ "role" "worker"). */}}
{{- define "liverseg.roleSelectorLabels" -}}
{{ include "liverseg.selectorLabels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "liverseg.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "liverseg.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "liverseg.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the backend URLs: the chart's own or existingSecret.name. */}}
{{- define "liverseg.secretName" -}}
{{- default (printf "%s-backends" (include "liverseg.fullname" .)) .Values.existingSecret.name -}}
{{- end -}}

{{- define "liverseg.claimName" -}}
{{- default (printf "%s-data" (include "liverseg.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}

{{/*
The gateway's public URL: gateway.publicUrl, else derived from the ingress,
else empty (the gateway takes it from Host and X-Forwarded-* per request).
*/}}
{{- define "liverseg.publicUrl" -}}
{{- $g := .Values.gateway -}}
{{- if $g.publicUrl -}}
{{- $g.publicUrl -}}
{{- else if and $g.ingress.enabled $g.ingress.host -}}
{{- $scheme := ternary "https" "http" $g.ingress.tls.enabled -}}
{{- $path := trimSuffix "/" $g.ingress.path -}}
{{- printf "%s://%s%s" $scheme $g.ingress.host $path -}}
{{- end -}}
{{- end -}}

{{/*
The fewest pods a role runs: what its PodDisruptionBudget is about. The
worker's count is the autoscaler's minimum while one scales it.
*/}}
{{- define "liverseg.minReplicas" -}}
{{- $v := index .root.Values .role -}}
{{- if and (eq .role "worker") .root.Values.keda.enabled -}}
{{- .root.Values.keda.minReplicaCount -}}
{{- else if and (eq .role "worker") .root.Values.worker.autoscaling.enabled -}}
{{- .root.Values.worker.autoscaling.minReplicas -}}
{{- else -}}
{{- $v.replicas -}}
{{- end -}}
{{- end -}}

{{/*
NetworkPolicy peers from the values' short form:
  {cidr, except} | {namespace, podLabels} | {podLabels}
*/}}
{{- define "liverseg.peers" -}}
{{- range . }}
{{- if .cidr }}
- ipBlock:
    cidr: {{ .cidr }}
    {{- with .except }}
    except:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- else if .namespace }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .namespace }}
  {{- with .podLabels }}
  podSelector:
    matchLabels:
      {{- toYaml . | nindent 6 }}
  {{- end }}
{{- else }}
- podSelector:
    matchLabels:
      {{- toYaml (.podLabels | default dict) | nindent 6 }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Checks that types alone cannot express (values.schema.json has the rest).
Rendered from the ConfigMap, which every release has.
*/}}
{{- define "liverseg.validate" -}}
{{- if and .Values.listener.enabled (empty .Values.listener.allowedCallingAes) -}}
{{- fail "listener.allowedCallingAes is empty: in a pod the listener binds every interface, where liverseg refuses to accept any calling AE. List the AE titles of the PACS and modalities that send to it (e.g. --set listener.allowedCallingAes={PACS}), or set listener.enabled=false." -}}
{{- end -}}
{{- if and (not .Values.existingSecret.name) (or (empty .Values.postgresql.url) (empty .Values.redis.url)) -}}
{{- fail "postgresql.url and redis.url are required (or existingSecret.name): the pods share metadata and the job queue, which the embedded SQLite store and queue cannot do across pods." -}}
{{- end -}}
{{- if and .Values.worker.enabled .Values.keda.enabled (empty .Values.keda.address) -}}
{{- fail "keda.address is required with keda.enabled: the host:port at which KEDA reaches Redis." -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled .Values.listener.enabled (empty .Values.networkPolicy.dicomFrom) -}}
{{- fail "networkPolicy.dicomFrom is empty: with the NetworkPolicy on, no PACS could reach the listener. List the PACS/modality CIDRs or namespaces." -}}
{{- end -}}
{{- if and .Values.keda.enabled (gt (int .Values.keda.minReplicaCount) (int .Values.keda.maxReplicaCount)) -}}
{{- fail "keda.minReplicaCount is larger than keda.maxReplicaCount." -}}
{{- end -}}
{{- if gt (int .Values.worker.autoscaling.minReplicas) (int .Values.worker.autoscaling.maxReplicas) -}}
{{- fail "worker.autoscaling.minReplicas is larger than worker.autoscaling.maxReplicas." -}}
{{- end -}}
{{- $a := .Values.auth -}}
{{- if and .Values.gateway.enabled $a.required (empty $a.jwks) -}}
{{- fail "auth.jwks is empty: in a pod the gateway serves DICOMweb, gRPC and the API on every interface, where liverseg refuses to run without authentication. Set auth.jwks (the identity provider's JWKS URL), auth.issuer and auth.audience, or auth.required=false to serve them to anyone who can reach the pod." -}}
{{- end -}}
{{- if and $a.jwks (or (empty $a.issuer) (empty $a.audience)) -}}
{{- fail "auth.issuer and auth.audience are required with auth.jwks: tokens are only accepted from a named issuer for a named audience." -}}
{{- end -}}
{{- $t := .Values.listener.tls -}}
{{- if and .Values.listener.enabled $t.required (empty $t.secretName) -}}
{{- fail "listener.tls.secretName is empty: in a pod the listener binds every interface, where liverseg refuses plain DICOM. Name a kubernetes.io/tls Secret (tls.crt, tls.key) for DICOM TLS, or set listener.tls.required=false to accept unencrypted DICOM from the network." -}}
{{- end -}}
{{- if and $t.clientCaSecret (empty $t.secretName) -}}
{{- fail "listener.tls.clientCaSecret needs listener.tls.secretName: client certificates are only checked over TLS." -}}
{{- end -}}
{{- $d := .Values.config.delivery.tls -}}
{{- if and $d.enabled (empty $d.caSecret) (empty $d.caConfigMap) -}}
{{- fail "config.delivery.tls.enabled needs config.delivery.tls.caSecret or caConfigMap: the CA bundle that verifies the PACS certificates." -}}
{{- end -}}
{{- if and $d.caSecret $d.caConfigMap -}}
{{- fail "config.delivery.tls: set caSecret or caConfigMap, not both." -}}
{{- end -}}
{{- if and $d.clientSecret (not $d.enabled) -}}
{{- fail "config.delivery.tls.clientSecret is set but config.delivery.tls.enabled is false." -}}
{{- end -}}
{{- end -}}
