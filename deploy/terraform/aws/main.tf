# Polder on AWS: EKS for the coordinators, RDS PostgreSQL for the catalog, S3 for the lake,
# IRSA for S3 access without static keys, Secrets Manager for the secrets the ExternalSecret in
# deploy/kubernetes/base/externalsecret.yaml reads. An example to adapt: see README.md.

data "aws_availability_zones" "available" {
  state = "available"
}

locals {
  name = "${var.name}-${var.environment}"
  azs  = slice(data.aws_availability_zones.available.names, 0, 3)
}

# --- network --------------------------------------------------------------------------------

module "vpc" {
  source  = "terraform-aws-modules/vpc/aws"
  version = "~> 5.8"

  name = local.name
  cidr = var.vpc_cidr
  azs  = local.azs

  private_subnets  = [for i, az in local.azs : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnets   = [for i, az in local.azs : cidrsubnet(var.vpc_cidr, 8, i + 48)]
  database_subnets = [for i, az in local.azs : cidrsubnet(var.vpc_cidr, 8, i + 52)]

  create_database_subnet_group = true
  enable_nat_gateway           = true
  single_nat_gateway           = var.environment != "prod"

  public_subnet_tags = {
    "kubernetes.io/role/elb" = 1
  }
  private_subnet_tags = {
    "kubernetes.io/role/internal-elb" = 1
  }
}

# S3 traffic from the nodes stays in the VPC (and off the NAT gateway's bill).
resource "aws_vpc_endpoint" "s3" {
  vpc_id            = module.vpc.vpc_id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = module.vpc.private_route_table_ids
}

# --- Kubernetes -----------------------------------------------------------------------------

module "eks" {
  source  = "terraform-aws-modules/eks/aws"
  version = "~> 20.24"

  cluster_name    = local.name
  cluster_version = var.kubernetes_version

  cluster_endpoint_public_access           = true
  enable_cluster_creator_admin_permissions = true

  # IRSA: the OIDC provider that lets the polder service account assume aws_iam_role.polder_s3.
  enable_irsa = true

  vpc_id     = module.vpc.vpc_id
  subnet_ids = module.vpc.private_subnets

  eks_managed_node_groups = {
    coordinators = {
      instance_types = var.node_instance_types
      min_size       = var.node_min_size
      max_size       = var.node_max_size
      desired_size   = var.node_min_size
    }
  }
}

# --- catalog: RDS PostgreSQL ----------------------------------------------------------------

resource "random_password" "catalog" {
  length  = 32
  special = false # goes into a postgres:// URL unescaped
}

resource "aws_security_group" "catalog" {
  name        = "${local.name}-catalog"
  description = "PostgreSQL catalog of Polder: reachable from the EKS nodes only"
  vpc_id      = module.vpc.vpc_id

  ingress {
    description     = "PostgreSQL from the EKS nodes"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = [module.eks.node_security_group_id]
  }
}

resource "aws_db_instance" "catalog" {
  identifier     = "${local.name}-catalog"
  engine         = "postgres"
  engine_version = "16"
  instance_class = var.db_instance_class

  allocated_storage     = 20
  max_allocated_storage = 200
  storage_type          = "gp3"
  storage_encrypted     = true

  db_name  = "polder"
  username = "polder"
  password = random_password.catalog.result

  db_subnet_group_name   = module.vpc.database_subnet_group_name
  vpc_security_group_ids = [aws_security_group.catalog.id]
  publicly_accessible    = false
  multi_az               = var.db_multi_az

  backup_retention_period   = 14
  deletion_protection       = var.environment == "prod"
  skip_final_snapshot       = var.environment != "prod"
  final_snapshot_identifier = "${local.name}-catalog-final"

  performance_insights_enabled = true
}

# --- lake: S3 -------------------------------------------------------------------------------

resource "aws_s3_bucket" "lake" {
  bucket = var.lake_bucket_name
}

resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket = aws_s3_bucket.lake.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "lake" {
  bucket = aws_s3_bucket.lake.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Delta tables keep their own history (time travel); S3 versions of overwritten or deleted
# objects are only a safety net, so they expire.
resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

# --- IRSA: S3 access for the polder service account -----------------------------------------

data "aws_iam_policy_document" "polder_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [module.eks.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${module.eks.oidc_provider}:sub"
      values   = ["system:serviceaccount:${var.kubernetes_namespace}:${var.kubernetes_service_account}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${module.eks.oidc_provider}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "polder_s3" {
  name               = "${local.name}-s3"
  assume_role_policy = data.aws_iam_policy_document.polder_assume.json
}

data "aws_iam_policy_document" "lake_access" {
  statement {
    sid       = "ListLake"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.lake.arn]
  }

  statement {
    sid = "ReadWriteLakeObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.lake.arn}/*"]
  }
}

resource "aws_iam_role_policy" "polder_s3" {
  name   = "lake-access"
  role   = aws_iam_role.polder_s3.id
  policy = data.aws_iam_policy_document.lake_access.json
}

# --- secrets: AWS Secrets Manager -----------------------------------------------------------

resource "random_password" "admin" {
  length  = 24
  special = true
}

# POLDER_SECRET_KEY: 32 random bytes, base64; the same in every replica.
resource "random_bytes" "secret_key" {
  length = 32
}

resource "aws_secretsmanager_secret" "polder" {
  name                    = "polder/${var.environment}"
  description             = "Polder: catalog URL, admin password and secrets key (read by the ExternalSecret)"
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "polder" {
  secret_id = aws_secretsmanager_secret.polder.id
  secret_string = jsonencode({
    catalog_url    = "postgres://polder:${random_password.catalog.result}@${aws_db_instance.catalog.endpoint}/polder?sslmode=require"
    admin_password = random_password.admin.result
    secret_key     = random_bytes.secret_key.base64
  })
}
