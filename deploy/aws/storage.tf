# --- ECR: the image the jobs run -------------------------------------------------------------

resource "aws_ecr_repository" "this" {
  #checkov:skip=CKV_AWS_51:Tags are mutable because `latest` moves with every push of main (deploy/push_ecr.sh); revision tags are never pushed twice, and the jobs can pin a digest (var.image)
  name                 = var.name
  image_tag_mutability = "MUTABLE"
  force_delete         = false

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = local.kms_key_arn
  }

  tags = local.tags
}

resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Untagged images (replaced layers of moved tags) go after 7 days"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 7
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the newest ${var.ecr_keep_images} tagged images (rollback targets)"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = var.ecr_keep_images
        }
        action = { type = "expire" }
      }
    ]
  })
}

# --- Buckets ----------------------------------------------------------------------------------

locals {
  buckets = {
    deliveries = local.deliveries_bucket
    site       = local.site_bucket
  }
}

resource "aws_s3_bucket" "this" {
  for_each = local.buckets

  #checkov:skip=CKV_AWS_18:Server access logs need a third bucket; CloudTrail S3 data events (account level) are the audit trail of choice. Add a logging bucket where policy requires it
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice of the account (the deliveries are also kept in the store's bronze layer, and the site is rebuilt from the store)
  #checkov:skip=CKV2_AWS_62:The deliveries bucket sends every event to EventBridge (aws_s3_bucket_notification.deliveries); the site bucket only receives what the jobs publish and nothing consumes its events
  bucket        = each.value
  force_destroy = var.force_destroy_buckets
  tags          = merge(local.tags, { "shopscribe:bucket" = each.key })
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each                = aws_s3_bucket.this
  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Versioning: a delivery overwritten under the same key keeps its earlier version (and S3 event
# has a versionId), and a bad publish can be rolled back object by object.
resource "aws_s3_bucket_versioning" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each = aws_s3_bucket.this
  bucket   = each.value.id

  rule {
    id     = "noncurrent-versions-and-incomplete-uploads"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = each.key == "site" ? 30 : 365
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

data "aws_iam_policy_document" "bucket" {
  for_each = aws_s3_bucket.this

  statement {
    sid     = "TlsOnly"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      each.value.arn,
      "${each.value.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  dynamic "statement" {
    for_each = each.key == "site" && var.enable_cloudfront ? [1] : []
    content {
      sid       = "CloudFrontReadsTheSite"
      actions   = ["s3:GetObject"]
      resources = ["${each.value.arn}/${local.site_prefix}/*"]
      principals {
        type        = "Service"
        identifiers = ["cloudfront.amazonaws.com"]
      }
      condition {
        test     = "StringEquals"
        variable = "AWS:SourceArn"
        values   = [aws_cloudfront_distribution.site[0].arn]
      }
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  for_each   = aws_s3_bucket.this
  bucket     = each.value.id
  policy     = data.aws_iam_policy_document.bucket[each.key].json
  depends_on = [aws_s3_bucket_public_access_block.this]
}

# Every object event of the deliveries bucket goes to EventBridge; the rule in events.tf picks
# "Object Created" under var.deliveries_prefix.
resource "aws_s3_bucket_notification" "deliveries" {
  bucket      = aws_s3_bucket.this["deliveries"].id
  eventbridge = true
}

# --- CloudFront (optional): the site, the bucket staying private ------------------------------

resource "aws_cloudfront_origin_access_control" "site" {
  count                             = var.enable_cloudfront ? 1 : 0
  name                              = "${var.name}-site"
  description                       = "shopscribe site bucket"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

resource "aws_cloudfront_response_headers_policy" "site" {
  count = var.enable_cloudfront ? 1 : 0
  name  = "${var.name}-site"

  security_headers_config {
    content_type_options {
      override = true
    }
    frame_options {
      frame_option = "DENY"
      override     = true
    }
    referrer_policy {
      referrer_policy = "strict-origin-when-cross-origin"
      override        = true
    }
    strict_transport_security {
      access_control_max_age_sec = 31536000
      include_subdomains         = true
      override                   = true
    }
  }
}

resource "aws_cloudfront_distribution" "site" {
  count = var.enable_cloudfront ? 1 : 0

  #checkov:skip=CKV_AWS_68:A public, static, read-only site with no forms or query handling; attach a WAF web ACL (web_acl_id) where the account requires one
  #checkov:skip=CKV2_AWS_47:Same: no WAF, hence no Log4j rule; the origin is S3, which runs no Java
  #checkov:skip=CKV_AWS_86:Access logs need a logging bucket with ACLs; CloudFront standard logging v2 or real-time logs can be added per account policy
  #checkov:skip=CKV_AWS_310:One origin: the site bucket is the only copy of the published site (it is rebuilt from the store), so there is nothing to fail over to
  #checkov:skip=CKV_AWS_174:The default *.cloudfront.net certificate is used (no custom domain in this module); its TLS policy is set by CloudFront. Set a certificate and minimum_protocol_version TLSv1.2_2021 with a custom domain
  #checkov:skip=CKV2_AWS_42:No custom domain in this module, so no ACM certificate; add aliases and a certificate for one
  #checkov:skip=CKV_AWS_374:The site is for every country (SEO pages); geo restriction would defeat it
  enabled             = true
  comment             = "${var.name} site"
  default_root_object = "index.html"
  price_class         = var.cloudfront_price_class
  http_version        = "http2and3"

  origin {
    origin_id                = "site"
    domain_name              = aws_s3_bucket.this["site"].bucket_regional_domain_name
    origin_path              = "/${local.site_prefix}"
    origin_access_control_id = aws_cloudfront_origin_access_control.site[0].id
  }

  default_cache_behavior {
    target_origin_id           = "site"
    viewer_protocol_policy     = "redirect-to-https"
    allowed_methods            = ["GET", "HEAD"]
    cached_methods             = ["GET", "HEAD"]
    compress                   = true
    cache_policy_id            = "658327ea-f89d-4fab-a63d-7e88639e58f6" # Managed-CachingOptimized
    response_headers_policy_id = aws_cloudfront_response_headers_policy.site[0].id
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = true
  }

  tags = local.tags
}
