package dev.liveinference;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.beam.model.expansion.v1.ExpansionApi.DiscoverSchemaTransformRequest;
import org.apache.beam.model.expansion.v1.ExpansionApi.DiscoverSchemaTransformResponse;
import org.apache.beam.model.expansion.v1.ExpansionApi.ExpansionRequest;
import org.apache.beam.model.expansion.v1.ExpansionApi.ExpansionResponse;
import org.apache.beam.model.expansion.v1.ExpansionServiceGrpc;
import org.apache.beam.model.jobmanagement.v1.ArtifactApi.GetArtifactRequest;
import org.apache.beam.model.jobmanagement.v1.ArtifactApi.GetArtifactResponse;
import org.apache.beam.model.jobmanagement.v1.ArtifactApi.ResolveArtifactsRequest;
import org.apache.beam.model.jobmanagement.v1.ArtifactApi.ResolveArtifactsResponse;
import org.apache.beam.model.jobmanagement.v1.ArtifactRetrievalServiceGrpc;
import org.apache.beam.model.pipeline.v1.Endpoints.ApiServiceDescriptor;
import org.apache.beam.model.pipeline.v1.RunnerApi.ArtifactInformation;
import org.apache.beam.model.pipeline.v1.RunnerApi.Environment;
import org.apache.beam.sdk.util.construction.ExpansionServiceClient;
import org.apache.beam.sdk.util.construction.ExpansionServiceClientFactory;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.ManagedChannel;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.Server;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.Status;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.StatusRuntimeException;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.netty.NettyChannelBuilder;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.netty.NettyServerBuilder;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.stub.StreamObserver;

/**
 * One expansion over TLS, for Beam's {@code External}.
 *
 * <p>{@code External} sends the expansion request through the client factory it is given (this
 * class: a TLS channel to the service), but then fetches the artifacts of the expanded
 * environments over a <em>plaintext</em> channel to the endpoint it was given. So that endpoint
 * is a relay on loopback, open only while the expansion runs, that forwards Beam's two artifact
 * calls to the service over the same TLS channel, and only for the artifacts the service's own
 * expansion response named (and the replacements it resolved them to).
 */
final class TlsExpansion implements ExpansionServiceClientFactory {

  private final ManagedChannel channel;
  private final Server relay;
  private final Set<ArtifactInformation> named;

  private TlsExpansion(ManagedChannel channel, Server relay, Set<ArtifactInformation> named) {
    this.channel = channel;
    this.relay = relay;
    this.named = named;
  }

  /**
   * Opens the TLS channel to {@code hostAndPort} and starts the artifact relay.
   *
   * @throws IllegalStateException if the relay cannot listen on loopback
   */
  static TlsExpansion open(TlsFiles tls, String hostAndPort) {
    ManagedChannel channel =
        NettyChannelBuilder.forTarget(hostAndPort, tls.credentials())
            .maxInboundMessageSize(Integer.MAX_VALUE)
            .build();
    Set<ArtifactInformation> named = ConcurrentHashMap.newKeySet();
    Relay service = new Relay(ArtifactRetrievalServiceGrpc.newBlockingStub(channel), named);
    Server relay =
        NettyServerBuilder.forAddress(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0))
            .addService(service)
            .build();
    try {
      relay.start();
    } catch (IOException error) {
      channel.shutdownNow();
      throw new IllegalStateException(
          "cannot open a loopback port for the artifacts of the TLS expansion: " + error, error);
    }
    return new TlsExpansion(channel, relay, named);
  }

  /**
   * The endpoint to give {@code External}: the loopback relay.
   *
   * @return {@code host:port} of the relay
   */
  String artifactEndpoint() {
    InetSocketAddress address = (InetSocketAddress) relay.getListenSockets().get(0);
    return InetAddress.getLoopbackAddress().getHostAddress() + ":" + address.getPort();
  }

  @Override
  public ExpansionServiceClient getExpansionServiceClient(ApiServiceDescriptor endpoint) {
    ExpansionServiceGrpc.ExpansionServiceBlockingStub stub =
        ExpansionServiceGrpc.newBlockingStub(channel);
    return new ExpansionServiceClient() {
      @Override
      public ExpansionResponse expand(ExpansionRequest request) {
        ExpansionResponse response = stub.expand(request);
        for (Environment environment : response.getComponents().getEnvironmentsMap().values()) {
          named.addAll(environment.getDependenciesList());
        }
        return response;
      }

      @Override
      public DiscoverSchemaTransformResponse discover(DiscoverSchemaTransformRequest request) {
        return stub.discoverSchemaTransform(request);
      }

      @Override
      public void close() {}
    };
  }

  /** Stops the relay and closes the TLS channel. */
  @Override
  public void close() {
    relay.shutdownNow();
    channel.shutdownNow();
  }

  /** Beam's artifact calls, relayed over TLS for the artifacts in {@link #named} only. */
  private static final class Relay
      extends ArtifactRetrievalServiceGrpc.ArtifactRetrievalServiceImplBase {

    private final ArtifactRetrievalServiceGrpc.ArtifactRetrievalServiceBlockingStub service;
    private final Set<ArtifactInformation> named;

    Relay(
        ArtifactRetrievalServiceGrpc.ArtifactRetrievalServiceBlockingStub service,
        Set<ArtifactInformation> named) {
      this.service = service;
      this.named = named;
    }

    @Override
    public void resolveArtifacts(
        ResolveArtifactsRequest request, StreamObserver<ResolveArtifactsResponse> response) {
      if (!named.containsAll(request.getArtifactsList())) {
        response.onError(refused(request.getArtifactsList()));
        return;
      }
      try {
        ResolveArtifactsResponse resolved = service.resolveArtifacts(request);
        named.addAll(resolved.getReplacementsList());
        response.onNext(resolved);
        response.onCompleted();
      } catch (StatusRuntimeException error) {
        response.onError(error);
      }
    }

    @Override
    public void getArtifact(
        GetArtifactRequest request, StreamObserver<GetArtifactResponse> response) {
      if (!named.contains(request.getArtifact())) {
        response.onError(refused(List.of(request.getArtifact())));
        return;
      }
      try {
        service.getArtifact(request).forEachRemaining(response::onNext);
        response.onCompleted();
      } catch (StatusRuntimeException error) {
        response.onError(error);
      }
    }

    private static StatusRuntimeException refused(List<ArtifactInformation> artifacts) {
      return Status.PERMISSION_DENIED
          .withDescription(
              "this relay serves only the artifacts the expansion response named, not "
                  + artifacts)
          .asRuntimeException();
    }
  }
}
