// The AWS SDK for JavaScript v3 against Bastion's Rekognition-compatible endpoint.
//
//   node tests/js/rekognition.mjs URL ACCESS_KEY_ID SECRET_ACCESS_KEY IMAGE
//
// Calls DetectModerationLabels on IMAGE, then on bytes that are no image, and prints one
// JSON line: the labels answered, the model version, the request id, and the typed error
// (whether it is an instance of the SDK's InvalidImageFormatException). Exits 1 when
// something is not as expected.
import { readFileSync } from "node:fs";
import {
  DetectModerationLabelsCommand,
  InvalidImageFormatException,
  RekognitionClient,
} from "@aws-sdk/client-rekognition";

const [url, keyId, secret, imagePath] = process.argv.slice(2);
if (!imagePath) {
  console.error("usage: rekognition.mjs URL ACCESS_KEY_ID SECRET_ACCESS_KEY IMAGE");
  process.exit(2);
}

const client = new RekognitionClient({
  endpoint: url,
  region: "us-east-1",
  credentials: { accessKeyId: keyId, secretAccessKey: secret },
  maxAttempts: 1,
});

const answer = await client.send(
  new DetectModerationLabelsCommand({
    Image: { Bytes: readFileSync(imagePath) },
    MinConfidence: 0,
  }),
);

let error = null;
try {
  await client.send(
    new DetectModerationLabelsCommand({ Image: { Bytes: Buffer.from("%PDF-1.4 not an image") } }),
  );
} catch (err) {
  error = {
    name: err.name,
    instance: err instanceof InvalidImageFormatException,
    status: err.$metadata?.httpStatusCode ?? null,
    message: err.message,
  };
}

const out = {
  labels: answer.ModerationLabels ?? [],
  modelVersion: answer.ModerationModelVersion ?? null,
  requestId: answer.$metadata?.requestId ?? null,
  error,
};
console.log(JSON.stringify(out));
process.exit(error?.instance && out.modelVersion ? 0 : 1);
