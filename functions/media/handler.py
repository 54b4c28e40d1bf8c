"""Routes `mediaUpload`, `mediaDownload`."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.handler_kit import route_handler
from chat_backend.logic.media import download_media, upload_media
from chat_backend.models.client_frames import MediaDownloadFrame, MediaUploadFrame
from chat_backend.routes import RouteTable
from chat_backend.services import Services


def media_routes(s: Services, context: LambdaContext) -> RouteTable:
    store, bucket, limiter = s.store, s.media, s.limiter
    downloads = s.media_downloads  # the CDN's signed URLs, or the bucket's presigned GETs
    return {
        "mediaUpload": (
            MediaUploadFrame,
            lambda caller, frame: upload_media(store, bucket, limiter, caller, frame),
        ),
        "mediaDownload": (
            MediaDownloadFrame,
            lambda caller, frame: download_media(store, downloads, caller, frame),
        ),
    }


handler = route_handler("media", media_routes)
