# The two image repositories: "inference" (SageMaker Batch Transform container) and "postprocess"
# (Lambda function and AWS Batch jobs). Tags are immutable, so a deployment names exactly the
# image it runs; pushes are scanned; old images are expired.

locals {
  ecr_lifecycle_policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Expire untagged images (interrupted pushes) after a day"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 1
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the newest ${var.ecr_keep_images} images"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = var.ecr_keep_images
        }
        action = { type = "expire" }
      },
    ]
  })
}

resource "aws_ecr_repository" "inference" {
  name                 = "${var.ecr_repository_prefix}inference"
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.main.arn
  }
}

resource "aws_ecr_lifecycle_policy" "inference" {
  repository = aws_ecr_repository.inference.name
  policy     = local.ecr_lifecycle_policy
}

resource "aws_ecr_repository" "postprocess" {
  name                 = "${var.ecr_repository_prefix}postprocess"
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.main.arn
  }
}

resource "aws_ecr_lifecycle_policy" "postprocess" {
  repository = aws_ecr_repository.postprocess.name
  policy     = local.ecr_lifecycle_policy
}

# Lambda pulls a container image with its service principal, not the function's role: allow it
# for this deployment's function only.
data "aws_iam_policy_document" "postprocess_repository" {
  statement {
    sid     = "LambdaPullsThePostprocessImage"
    effect  = "Allow"
    actions = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    condition {
      test     = "StringLike"
      variable = "aws:sourceArn"
      values   = ["arn:${local.partition}:lambda:${var.region}:${local.account_id}:function:${local.lambda_function_name}"]
    }
  }
}

resource "aws_ecr_repository_policy" "postprocess" {
  repository = aws_ecr_repository.postprocess.name
  policy     = data.aws_iam_policy_document.postprocess_repository.json
}
