/** @type {AppTypes.Config} */
// The stock OHIF image (ohif/app, compose service `ohif`, optional) pointed at the
// liverseg gateway's DICOMweb root. The gateway serves the same OHIF release at
// http://127.0.0.1:8080/viewer with a generated configuration for its own root
// (services/gateway/assets/ohif-app-config.js); this file mirrors it with an
// absolute, cross-origin root. The gateway answers CORS for any origin.
window.config = {
  name: 'liverseg (standalone OHIF)',
  routerBasename: '/',
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  investigationalUseDialog: {
    option: 'never',
  },
  maxNumberOfWebWorkers: 3,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  maxNumRequests: {
    interaction: 100,
    thumbnail: 75,
    prefetch: 25,
  },
  defaultDataSourceName: 'liverseg',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'liverseg',
      configuration: {
        friendlyName: 'liverseg gateway DICOMweb',
        name: 'liverseg',
        // The browser talks to the published gateway port, not to the compose network.
        wadoUriRoot: 'http://127.0.0.1:8080/dicom-web',
        qidoRoot: 'http://127.0.0.1:8080/dicom-web',
        wadoRoot: 'http://127.0.0.1:8080/dicom-web',
        qidoSupportsIncludeField: true,
        supportsReject: false,
        supportsStow: true,
        dicomUploadEnabled: true,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: true,
        supportsWildcard: true,
        omitQuotationForMultipartRequest: true,
        bulkDataURI: {
          enabled: true,
          relativeResolution: 'studies',
        },
      },
    },
  ],
};
