output "cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name <this>)."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "EKS API endpoint."
  value       = module.eks.cluster_endpoint
}

output "catalog_endpoint" {
  description = "host:port of the RDS PostgreSQL catalog."
  value       = aws_db_instance.catalog.endpoint
}

output "lake_url" {
  description = "Value for POLDER_LAKE (deploy/kubernetes/base/configmap.yaml)."
  value       = "s3://${aws_s3_bucket.lake.bucket}/lake"
}

output "polder_s3_role_arn" {
  description = "IRSA role: annotate the service account with eks.amazonaws.com/role-arn set to this."
  value       = aws_iam_role.polder_s3.arn
}

output "secret_name" {
  description = "Secrets Manager secret the ExternalSecret reads (catalog_url, admin_password, secret_key)."
  value       = aws_secretsmanager_secret.polder.name
}
