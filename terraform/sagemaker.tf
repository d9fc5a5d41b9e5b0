# The SageMaker model that transform jobs run: the inference image (models baked in under
# /opt/ml/model, so no model artefact in S3), the execution role and the container settings.
# Network isolation: the container cannot open connections; SageMaker itself moves frames in and
# results out.

locals {
  # SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS, not SAGEMAKER_MODEL_SERVER_TIMEOUT: the toolkit passes the
  # latter to multi-model-server, which reads it in minutes. Workers: 0 leaves the container's rule
  # (one per GPU; on CPU as many as memory allows) in charge.
  inference_environment = merge(
    {
      SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS = tostring(var.inference_model_server_timeout)
      FACE_BLUR_DEVICE                       = var.inference_device
      FACE_BLUR_GPU_FALLBACK                 = var.inference_gpu_fallback ? "true" : "false"
    },
    var.inference_model_server_workers == 0 ? {} : { SAGEMAKER_MODEL_SERVER_WORKERS = tostring(var.inference_model_server_workers) },
    var.inference_detector == "" ? {} : { FACE_BLUR_DETECTOR = var.inference_detector },
    var.inference_embedder == "" ? {} : { FACE_BLUR_EMBEDDER = var.inference_embedder },
  )
}

resource "aws_sagemaker_model" "inference" {
  name                     = local.sagemaker_model_name
  execution_role_arn       = aws_iam_role.sagemaker.arn
  enable_network_isolation = true

  primary_container {
    image       = local.inference_image_uri
    mode        = "SingleModel"
    environment = local.inference_environment
  }

  depends_on = [aws_iam_role_policy.sagemaker]
}
