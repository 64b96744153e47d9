// Thumbnail format negotiation: the viewer-request CloudFront Function (runtime cloudfront-js-2.0)
// of the distribution's thumbnails cache behaviour. A request for a primary rendition,
// {prefix}{source key}/{width}.jpg, .png or .gif, is rewritten to the AVIF or WebP rendition the
// image processor writes beside it when the viewer's Accept header names that format (q > 0) and
// the edge stack says the processor writes it. Every other request goes on untouched, query string
// included. The URI is the cache key, so each format is cached under its own URI, with no header in
// the key (docs/edge.md, "Thumbnail formats").
//
// template-edge.yaml holds this file verbatim as the function's code (an Fn::Sub), which fills in
// the two placeholders below from the edge stack's parameters ThumbnailPrefix and
// ThumbnailFormats; tests/thumbnail-format checks that the template's copy is this file.
// ES 5.1 only: the runtime supports it all (and only some later features).
var THUMBNAIL_PREFIX = '/${ThumbnailPrefix}';
var FORMATS = ',${ThumbnailFormats},';

var AVIF = FORMATS.indexOf(',avif,') >= 0;
var WEBP = FORMATS.indexOf(',webp,') >= 0;

// Each primary rendition's own media type, and what it may become, best first. AVIF renditions
// exist for still images only (JPEG and PNG primaries); an animated source's primary is a GIF and
// its WebP is animated too.
var STILL = [];
if (AVIF) STILL.push('avif');
if (WEBP) STILL.push('webp');
var ANIMATED = WEBP ? ['webp'] : [];
var PRIMARIES = {
    jpg: { type: 'image/jpeg', alternatives: STILL },
    png: { type: 'image/png', alternatives: STILL },
    gif: { type: 'image/gif', alternatives: ANIMATED }
};

var WIDTH = /^[0-9]{1,5}$/;
// RFC 9110, 12.4.2: a weight is 0 to 1 with at most three decimals.
var QVALUE = /^(0(\.[0-9]{0,3})?|1(\.0{0,3})?)$/;

function handler(event) {
    var request = event.request;
    var uri = request.uri;
    if (uri.indexOf(THUMBNAIL_PREFIX) !== 0) return request;
    // {prefix}{source key}/{width}.{ext}: a source key of at least one character.
    var slash = uri.lastIndexOf('/');
    var dot = uri.lastIndexOf('.');
    if (slash <= THUMBNAIL_PREFIX.length || dot <= slash) return request;
    if (!WIDTH.test(uri.slice(slash + 1, dot))) return request;
    var extension = uri.slice(dot + 1);
    if (!Object.prototype.hasOwnProperty.call(PRIMARIES, extension)) return request;
    var primary = PRIMARIES[extension];
    if (primary.alternatives.length === 0) return request;
    var chosen = choose(primary, acceptWeights(request.headers.accept));
    if (chosen !== null) request.uri = uri.slice(0, dot + 1) + chosen;
    return request;
}

// The weight the Accept header gives each media range it names (lower-cased): { range: q }. Several
// Accept lines are one list (CloudFront gives them in multiValue). A range named twice keeps its
// lower weight; a weight that is not a valid qvalue counts as a refusal.
function acceptWeights(header) {
    var weights = Object.create(null);
    if (!header) return weights;
    var text = header.value || '';
    if (header.multiValue) {
        var values = [];
        for (var m = 0; m < header.multiValue.length; m++) values.push(header.multiValue[m].value);
        text = values.join(',');
    }
    var ranges = text.split(',');
    for (var i = 0; i < ranges.length; i++) {
        var parts = ranges[i].split(';');
        var range = parts[0].trim().toLowerCase();
        if (range === '') continue;
        var q = 1;
        for (var j = 1; j < parts.length; j++) {
            var parameter = parts[j].trim();
            var equals = parameter.indexOf('=');
            if (equals > 0 && parameter.slice(0, equals).trim().toLowerCase() === 'q') {
                var value = parameter.slice(equals + 1).trim();
                q = QVALUE.test(value) ? Number(value) : 0;
                break;
            }
        }
        if (!(range in weights) || q < weights[range]) weights[range] = q;
    }
    return weights;
}

// The alternative to serve, or null for the primary. Only an alternative's own media type counts
// as evidence: image/* and */* are sent by every browser, including those that decode neither AVIF
// nor WebP. The highest weight wins, the earlier alternative (the smaller file) on a tie; a viewer
// that weighs the primary's own type (or the wildcard that covers it) higher keeps the primary.
function choose(primary, weights) {
    var best = null;
    var bestWeight = 0;
    for (var i = 0; i < primary.alternatives.length; i++) {
        var weight = weights['image/' + primary.alternatives[i]];
        if (weight !== undefined && weight > bestWeight) {
            best = primary.alternatives[i];
            bestWeight = weight;
        }
    }
    if (best === null) return null;
    var own = weights[primary.type];
    if (own === undefined) own = weights['image/*'];
    if (own === undefined) own = weights['*/*'];
    return own !== undefined && own > bestWeight ? null : best;
}
