terraform {
  # 1.6+: the validation and check syntax used here; OpenTofu 1.6+ reads these files unchanged.
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80.0, < 6.0.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      Project    = "face-blur"
      Deployment = var.name
    })
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}
