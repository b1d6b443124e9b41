#!/usr/bin/env bash
# More training video for the demo's pretrained models (tried as a fifth stage: configs/pretrain_quickstart_extra_tried.yaml):
# real clips that Debian bookworm packages ship as examples, taken out of the packages without installing
# them. Needs the Debian archive (apt-get download) and dpkg-deb; nothing else is downloaded.
#
#   bash scripts/fetch_extra_videos.sh [DEST]     (default DEST: data/extra_videos, ignored by git)
#
# The videos are used for training only and are not redistributed; each keeps its package's licence
# (see /usr/share/doc/<package>/copyright inside each .deb). Left out on purpose: clips under 33 frames,
# synthetic graphics (moving discs, planets, slide animations) and the 600 MB psychtoolbox test movie.
set -euo pipefail
DEST=${1:-data/extra_videos}
# package  path inside the package  name in DEST
VIDEOS="
python3-imageio /usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4 cockatoo.mp4
python3-imageio /usr/lib/python3/dist-packages/imageio/resources/images/realshort.mp4 plants.mp4
opencv-doc /usr/share/doc/opencv-doc/examples/data/Megamind.avi megamind.avi
opencv-doc /usr/share/doc/opencv-doc/examples/data/tree.avi tree.avi
opencv-doc /usr/share/doc/opencv-doc/examples/data/vtest.avi pedestrians.avi
forensics-samples-files /usr/share/forensics-samples/original-files/movie1/VID_20191220_170832.mp4 dog.mp4
forensics-samples-files /usr/share/forensics-samples/original-files/movie2/movie-hello.mp4 screen.mp4
python3-mecavideo /usr/share/pymecavideo/data/video/balle-jbart.mp4 ball.mp4
"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$DEST"
packages=$(echo "$VIDEOS" | awk 'NF {print $1}' | sort -u)
(cd "$WORK" && apt-get download $packages)
for deb in "$WORK"/*.deb; do dpkg-deb -x "$deb" "$WORK/root"; done
echo "$VIDEOS" | while read -r package path name; do
    [ -n "$package" ] || continue
    cp "$WORK/root$path" "$DEST/$name"
    echo "$DEST/$name  <- $package:$path"
done
