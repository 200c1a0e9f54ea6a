{{/* Names and labels shared by every template. */}}
{{- define "portcullis.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.webhook" -}}{{ include "portcullis.fullname" . }}-webhook{{- end -}}
{{- define "portcullis.sensor" -}}{{ include "portcullis.fullname" . }}-sensor{{- end -}}

{{- define "portcullis.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "portcullis.webhookSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "portcullis.sensorSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: sensor
{{- end -}}

{{- define "portcullis.tag" -}}{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}

{{/* The TLS Secret the webhook serves with. */}}
{{- define "portcullis.tlsSecret" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{- required "tls.secret.name is required with tls.mode=secret" .Values.tls.secret.name -}}
{{- else -}}
{{- include "portcullis.webhook" . }}-tls
{{- end -}}
{{- end -}}

{{/* The serving certificate's DNS names: the Service (the API server) and the headless Service
(the sensors), as a YAML list. */}}
{{- define "portcullis.dnsNames" -}}
- {{ include "portcullis.webhook" . }}.{{ .Release.Namespace }}.svc
- {{ include "portcullis.webhook" . }}.{{ .Release.Namespace }}.svc.cluster.local
- {{ include "portcullis.webhook" . }}-headless.{{ .Release.Namespace }}.svc
- {{ include "portcullis.webhook" . }}-headless.{{ .Release.Namespace }}.svc.cluster.local
{{- end -}}

{{/* Hardened container security context (non-root, read-only root, no capabilities). */}}
{{- define "portcullis.restricted" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The policy layers of config.webhook.layers as (apiGroups, resources, scope) entries, one per
API group: RBAC and the webhook rules are rendered from the same list.
*/}}
{{- define "portcullis.layerResources" -}}
{{- $layers := (((.Values.config).webhook).layers) | default list -}}
{{- $out := list -}}
{{- if has "clusterNetworkPolicy" $layers -}}
{{- $out = append $out (dict "group" "policy.networking.k8s.io" "version" "v1alpha2" "cluster" (list "clusternetworkpolicies") "namespaced" (list)) -}}
{{- end -}}
{{- if has "adminNetworkPolicy" $layers -}}
{{- $out = append $out (dict "group" "policy.networking.k8s.io" "version" "v1alpha1" "cluster" (list "adminnetworkpolicies" "baselineadminnetworkpolicies") "namespaced" (list)) -}}
{{- end -}}
{{- if has "cilium" $layers -}}
{{- $out = append $out (dict "group" "cilium.io" "version" "v2" "cluster" (list "ciliumclusterwidenetworkpolicies") "namespaced" (list "ciliumnetworkpolicies")) -}}
{{- end -}}
{{- if has "calico" $layers -}}
{{- $out = append $out (dict "group" "projectcalico.org" "version" "v3" "cluster" (list "globalnetworkpolicies" "tiers" "globalnetworksets") "namespaced" (list "networkpolicies" "networksets")) -}}
{{- $out = append $out (dict "group" "crd.projectcalico.org" "version" "v1" "cluster" (list "globalnetworkpolicies" "tiers" "globalnetworksets") "namespaced" (list "networkpolicies" "networksets")) -}}
{{- end -}}
{{- if has "istio" $layers -}}
{{- /* One rule for every version Istio serves (v1, v1beta1, v1alpha3). */ -}}
{{- $out = append $out (dict "group" "networking.istio.io" "version" "*" "cluster" (list) "namespaced" (list "serviceentries" "sidecars" "gateways" "virtualservices" "destinationrules")) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
