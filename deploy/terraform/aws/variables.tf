variable "region" {
  description = "AWS region for the cluster, the catalog database and the lake bucket."
  type        = string
  default     = "eu-west-1"
}

variable "environment" {
  description = "Environment name (dev, staging, prod): used in resource names."
  type        = string
  default     = "prod"
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "polder"
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "kubernetes_version" {
  description = "EKS control plane version."
  type        = string
  default     = "1.31"
}

variable "node_instance_types" {
  description = "Instance types of the managed node group that runs the coordinators."
  type        = list(string)
  default     = ["m6i.xlarge"]
}

variable "node_min_size" {
  description = "Smallest node count."
  type        = number
  default     = 3
}

variable "node_max_size" {
  description = "Largest node count."
  type        = number
  default     = 6
}

variable "db_instance_class" {
  description = "RDS instance class of the PostgreSQL catalog (the catalog is small: metadata only)."
  type        = string
  default     = "db.t4g.medium"
}

variable "db_multi_az" {
  description = "Run the catalog database with a standby in a second zone."
  type        = bool
  default     = true
}

variable "lake_bucket_name" {
  description = "Name of the S3 bucket for the lake (globally unique)."
  type        = string
}

variable "kubernetes_namespace" {
  description = "Namespace of the Polder deployment (deploy/kubernetes/overlays/prod uses polder)."
  type        = string
  default     = "polder"
}

variable "kubernetes_service_account" {
  description = "Service account of the coordinators (deploy/kubernetes/base/serviceaccount.yaml)."
  type        = string
  default     = "polder"
}
