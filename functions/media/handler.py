"""Routes `mediaUpload`, `mediaDownload`."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.logic.media import download_media, upload_media
from chat_backend.models.client_frames import MediaDownloadFrame, MediaUploadFrame
from chat_backend.observability import logger, metrics, tracer
from chat_backend.routes import handle_routes
from chat_backend.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    store, bucket, limiter = services().store, services().media, services().limiter
    downloads = services().media_downloads  # the CDN's signed URLs, or the bucket's presigned GETs
    return handle_routes(
        event,
        {
            "mediaUpload": (
                MediaUploadFrame,
                lambda caller, frame: upload_media(store, bucket, limiter, caller, frame),
            ),
            "mediaDownload": (
                MediaDownloadFrame,
                lambda caller, frame: download_media(store, downloads, caller, frame),
            ),
        },
        services().guard,
    )
